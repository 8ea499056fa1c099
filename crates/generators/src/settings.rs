//! A member's defaults and the server's: what a command uses where neither its options nor
//! inline flags say otherwise. Members' settings live in the journal (meta `settings:<user>`),
//! so they survive restarts; the server's come from the config.

use serde::{Deserialize, Serialize};

use crate::journal::{Journal, JournalError};

/// Longest suffix a member may keep (it is added to every prompt).
pub const MAX_SUFFIX_CHARS: usize = 300;
/// Longest default negative prompt.
pub const MAX_NEGATIVE_CHARS: usize = 1000;

/// Defaults for new jobs. Every field is optional: unset means "the next layer decides".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preferences {
    /// The workflow `/generate` uses when none is named (if it is of the command's kind).
    pub workflow: Option<String>,
    /// An aspect ratio (`16:9`) when no size is given.
    pub aspect: Option<String>,
    /// The negative prompt when none is given (`--no` adds to it).
    pub negative: Option<String>,
    pub steps: Option<u32>,
    /// A style from the server's styles file, when the command names none.
    pub style: Option<String>,
    /// Text added after every prompt (`, cinematic lighting`).
    pub suffix: Option<String>,
}

impl Preferences {
    /// `self` where set, else `under`.
    pub fn over(&self, under: &Preferences) -> Preferences {
        Preferences {
            workflow: self.workflow.clone().or_else(|| under.workflow.clone()),
            aspect: self.aspect.clone().or_else(|| under.aspect.clone()),
            negative: self.negative.clone().or_else(|| under.negative.clone()),
            steps: self.steps.or(under.steps),
            style: self.style.clone().or_else(|| under.style.clone()),
            suffix: self.suffix.clone().or_else(|| under.suffix.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Preferences::default()
    }
}

/// Everything a member has set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberSettings {
    #[serde(flatten)]
    pub prefs: Preferences,
    /// Follow-ups that draw open the prompt form first.
    pub remix: bool,
    /// Progress and results go to the member by direct message.
    pub private: bool,
}

fn key(user: u64) -> String {
    format!("settings:{user}")
}

/// `user`'s settings; the defaults when none are stored (or the stored text is unreadable,
/// which is logged: a member's settings never stop them from generating).
pub fn load(journal: &dyn Journal, user: u64) -> Result<MemberSettings, JournalError> {
    Ok(match journal.meta_get(&key(user))? {
        None => MemberSettings::default(),
        Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "unreadable member settings; using the defaults");
            MemberSettings::default()
        }),
    })
}

/// Stores `user`'s settings (nothing at all when they are the defaults).
pub fn save(
    journal: &dyn Journal,
    user: u64,
    settings: &MemberSettings,
) -> Result<(), JournalError> {
    if *settings == MemberSettings::default() {
        return journal.meta_delete(&key(user));
    }
    let text = serde_json::to_string(settings).unwrap_or_default();
    journal.meta_set(&key(user), &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::MemoryJournal;

    #[test]
    fn settings_round_trip_and_layers_fall_through() {
        let j = MemoryJournal::default();
        assert_eq!(load(&j, 7).unwrap(), MemberSettings::default());
        let mine = MemberSettings {
            prefs: Preferences {
                steps: Some(30),
                suffix: Some("film grain".into()),
                ..Preferences::default()
            },
            remix: true,
            private: true,
        };
        save(&j, 7, &mine).unwrap();
        assert_eq!(load(&j, 7).unwrap(), mine);
        assert_eq!(
            load(&j, 8).unwrap(),
            MemberSettings::default(),
            "per member"
        );
        let server = Preferences {
            steps: Some(20),
            aspect: Some("3:2".into()),
            ..Preferences::default()
        };
        let merged = mine.prefs.over(&server);
        assert_eq!(
            (merged.steps, merged.aspect.as_deref()),
            (Some(30), Some("3:2"))
        );
        save(&j, 7, &MemberSettings::default()).unwrap();
        assert_eq!(
            j.meta_get("settings:7").unwrap(),
            None,
            "defaults store nothing"
        );
        j.meta_set("settings:9", "{not json").unwrap();
        assert_eq!(load(&j, 9).unwrap(), MemberSettings::default());
    }
}
