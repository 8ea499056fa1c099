//! Logging: the subscriber the binary installs, and a writer that scrubs secrets from every
//! line whatever logged it.
//!
//! Secrets reach log text by routes we do not control: serenity's `#[instrument]` spans print
//! request routes (with interaction tokens) at debug and trace, and it logs whole gateway
//! events it does not know at debug. So redaction happens at the last step, on the bytes
//! written.

use std::io::{self, Write};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;

/// Discord interaction tokens are base64 of `interaction:<id>:<secret>`; this is the base64 of
/// `interaction` (the next character depends on what follows, so it is left out).
const INTERACTION_TOKEN_START: &str = "aW50ZXJhY3Rpb24";
const REDACTED_TOKEN: &str = "[redacted token]";
const REDACTED_SECRET: &str = "[redacted]";
/// Secrets shorter than this are not scrubbed (they would blank ordinary words).
const MIN_SECRET_CHARS: usize = 8;

/// Exact secrets (the bot token) scrubbed from every log line.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a secret to scrub from every later log line.
pub fn remember_secret(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !s.iter().any(|k| k == secret) {
        s.push(secret.to_string());
    }
}

/// Tokens sit in URL paths, so they use URL-safe base64.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=')
}

/// `text` with the given secrets and anything shaped like an interaction token replaced.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED_SECRET);
        }
    }
    if !out.contains(INTERACTION_TOKEN_START) {
        return out;
    }
    let mut clean = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find(INTERACTION_TOKEN_START) {
        clean.push_str(&rest[..at]);
        clean.push_str(REDACTED_TOKEN);
        let token = &rest[at..];
        let end = token.find(|c: char| !token_char(c)).unwrap_or(token.len());
        rest = &token[end..];
    }
    clean.push_str(rest);
    clean
}

/// Wraps a writer factory so that every line written passes through [`redact`].
#[derive(Debug, Clone)]
pub struct Redacting<M>(pub M);

/// One log line on its way out; see [`Redacting`].
#[derive(Debug)]
pub struct RedactingWriter<W>(W);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    /// The fmt layer formats a whole event and writes it with one call, so a secret is never
    /// split across two writes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
        self.0.write_all(redact(&text, &secrets).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Installs the process's subscriber: `RUST_LOG` (default `info`; `target=level` pairs such as
/// `comfycord=debug,serenity=warn`) filters what is written, and secrets are scrubbed from
/// every line on stderr. A static per-target filter: no regex engine and no span bookkeeping
/// on each event, which an env filter with field directives would bring.
pub fn init(format: Format) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let wanted = std::env::var("RUST_LOG").ok();
    let parsed = wanted.as_deref().map(str::parse::<Targets>);
    let filter = match &parsed {
        Some(Ok(targets)) => targets.clone(),
        _ => Targets::new().with_default(tracing::Level::INFO),
    };
    let writer = Redacting(io::stderr);
    // log_format json: one JSON object per line, spans (with the job id) included.
    let layer = match format {
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        Format::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
    if let (Some(text), Some(Err(e))) = (wanted, parsed) {
        tracing::warn!(
            "RUST_LOG={text:?} is not a list of target=level pairs ({e}); logging at info"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_interaction_tokens_are_scrubbed() {
        let secrets = vec!["MTIz.bot-token.secret".to_string()];
        let line = "PATCH /webhooks/1/aW50ZXJhY3Rpb246MTIzOmFiYw_x-y/messages/@original \
                    auth=Bot MTIz.bot-token.secret token=\"aW50ZXJhY3Rpb24Z9\" done";
        let clean = redact(line, &secrets);
        assert_eq!(
            clean,
            "PATCH /webhooks/1/[redacted token]/messages/@original auth=Bot [redacted] \
             token=\"[redacted token]\" done"
        );
        assert_eq!(
            redact("nothing secret here", &secrets),
            "nothing secret here"
        );
    }

    #[test]
    fn short_secrets_are_not_remembered() {
        remember_secret("abc");
        assert!(!SECRETS.read().unwrap().iter().any(|s| s == "abc"));
    }

    #[test]
    fn the_writer_scrubs_what_passes_through() {
        remember_secret("writer-test-secret-123");
        let mut out = RedactingWriter(Vec::new());
        writeln!(out, "token writer-test-secret-123 and aW50ZXJhY3Rpb246abc").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "token [redacted] and [redacted token]\n"
        );
    }
}
