//! Interactions serenity could not parse. It hands them on as `Event::Unknown` (the known
//! variant failed, so its untagged fallback matched), which poise ignores, and Discord would
//! show the member "The application did not respond". Where the payload still names the
//! interaction and its token, the member gets a short explanation instead.

use poise::serenity_prelude as serenity;
use serde_json::Value;
use serenity::Builder as _;
use serenity::{
    CreateAllowedMentions, CreateAutocompleteResponse, CreateInteractionResponse,
    CreateInteractionResponseMessage, Http, InteractionId,
};

/// Interaction types Discord sends (a newer type is answered like a command).
const PING: u64 = 1;
const AUTOCOMPLETE: u64 = 4;

/// What the member sees.
pub const UNREADABLE_MESSAGE: &str = "Discord sent this request in a form this bot cannot read, so nothing was run. Reload Discord (Ctrl+R) and try again; if it keeps happening, tell an admin.";

/// The parts of an unreadable INTERACTION_CREATE needed to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub id: u64,
    pub token: String,
    pub kind: u64,
}

/// Reads the interaction's id, token and type from an event serenity could not parse, if it
/// is an INTERACTION_CREATE (`kind`) whose payload `d` still has them.
pub fn unanswered(kind: &str, d: &Value) -> Option<Unanswered> {
    if kind != "INTERACTION_CREATE" {
        return None;
    }
    let id = match d.get("id")? {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    let token = d.get("token")?.as_str()?.to_string();
    let kind = d.get("type").and_then(Value::as_u64).unwrap_or(0);
    (id != 0 && !token.is_empty()).then_some(Unanswered { id, token, kind })
}

async fn answer(http: &Http, u: &Unanswered) {
    let response = match u.kind {
        // Pings come over HTTP, never the gateway; nothing to answer.
        PING => return,
        // Autocomplete cannot carry a message: an empty list at least ends the spinner.
        AUTOCOMPLETE => CreateInteractionResponse::Autocomplete(CreateAutocompleteResponse::new()),
        _ => CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new()
                .content(UNREADABLE_MESSAGE)
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new()),
        ),
    };
    match response
        .execute(http, (InteractionId::new(u.id), u.token.as_str()))
        .await
    {
        Ok(()) => {
            tracing::warn!(
                interaction = u.id,
                kind = u.kind,
                "answered an interaction serenity could not read"
            )
        }
        Err(e) => {
            tracing::warn!(interaction = u.id, kind = u.kind, error = %e, "could not answer an unreadable interaction")
        }
    }
}

/// serenity's raw events: the only place an unparsed interaction can still be seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnreadableInteractions;

#[serenity::async_trait]
impl serenity::RawEventHandler for UnreadableInteractions {
    async fn raw_event(&self, ctx: serenity::Context, ev: serenity::Event) {
        if let serenity::Event::Unknown(e) = ev {
            match unanswered(&e.kind, &e.value) {
                Some(u) => answer(&ctx.http, &u).await,
                None => tracing::debug!(event = %e.kind, "a gateway event serenity does not know"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_token_and_type_from_broken_payloads() {
        let missing_data: Value = serde_json::from_str(
            r#"{"id":"1300000000000000001","application_id":"1","type":2,"token":"aW50ZXJhY3Rpb246abc","version":1}"#,
        )
        .unwrap();
        assert_eq!(
            unanswered("INTERACTION_CREATE", &missing_data),
            Some(Unanswered {
                id: 1_300_000_000_000_000_001,
                token: "aW50ZXJhY3Rpb246abc".into(),
                kind: 2
            })
        );
        let unknown_type = serde_json::json!({"id": "7", "type": 99, "token": "t"});
        assert_eq!(
            unanswered("INTERACTION_CREATE", &unknown_type).map(|u| u.kind),
            Some(99)
        );
        // Not an interaction, no token, no id: nothing to answer.
        let ok = serde_json::json!({"id": "7", "token": "t"});
        assert_eq!(unanswered("MESSAGE_CREATE", &ok), None);
        for d in [
            serde_json::json!({"id": "7", "type": 2}),
            serde_json::json!({"token": "t", "type": 2}),
            serde_json::json!({"id": "0", "token": "t"}),
            serde_json::json!("not an object"),
        ] {
            assert_eq!(unanswered("INTERACTION_CREATE", &d), None, "{d}");
        }
    }
}
