//! Who may do what: allowed guilds, channels and roles, admins, and NSFW gating. Pure.

use crate::config::DiscordConfig;

/// The person behind an interaction and where they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub user: u64,
    pub guild: Option<u64>,
    pub channel: u64,
    pub roles: Vec<u64>,
    /// Acting from a direct message on a job that was delivered there privately from
    /// `guild`: the server's channel and role rules were met when the job began.
    pub private_dm: bool,
}

/// The user id serenity fills in when an interaction names neither `member` nor `user`
/// (its `UserId::default()`); no real Discord user has it.
const NO_USER: u64 = 1;

/// What a member is told when Discord did not say who they are.
pub const UNKNOWN_CALLER: &str =
    "Discord did not say who sent this request, so it was not run. Reload Discord (Ctrl+R) and try again.";

/// Whether an interaction says who sent it. One that does not is refused: a job needs an owner
/// for its limits, its Cancel and Delete buttons and its history.
pub fn caller_is_known(user: u64) -> bool {
    user != NO_USER
}

/// Admins (by user or role) may run admin commands, act on anyone's jobs and bypass limits.
pub fn is_admin(cfg: &DiscordConfig, caller: &Caller) -> bool {
    cfg.admin_users.contains(&caller.user)
        || caller.roles.iter().any(|r| cfg.admin_roles.contains(r))
}

fn list(ids: &[u64], mention: fn(u64) -> String) -> String {
    ids.iter()
        .map(|id| mention(*id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the caller may generate here; the refusal says what would work.
pub fn may_generate(cfg: &DiscordConfig, caller: &Caller) -> Result<(), String> {
    let Some(guild) = caller.guild else {
        return if cfg.allow_dms || is_admin(cfg, caller) {
            Ok(())
        } else {
            Err("comfycord works in servers, not in direct messages.".into())
        };
    };
    if !cfg.allowed_guilds.is_empty() && !cfg.allowed_guilds.contains(&guild) {
        return Err("comfycord is not enabled in this server.".into());
    }
    if caller.private_dm {
        return Ok(());
    }
    if !cfg.allowed_channels.is_empty() && !cfg.allowed_channels.contains(&caller.channel) {
        return Err(format!(
            "comfycord is not enabled in this channel; use {}.",
            list(&cfg.allowed_channels, |c| format!("<#{c}>"))
        ));
    }
    if !cfg.allowed_roles.is_empty()
        && !caller.roles.iter().any(|r| cfg.allowed_roles.contains(r))
        && !is_admin(cfg, caller)
    {
        return Err(format!(
            "you need one of these roles to generate: {}.",
            list(&cfg.allowed_roles, |r| format!("<@&{r}>"))
        ));
    }
    Ok(())
}

/// NSFW workflows run only in age-restricted channels (never in DMs).
pub fn nsfw_allowed(workflow: &str, workflow_nsfw: bool, channel_nsfw: bool) -> Result<(), String> {
    if workflow_nsfw && !channel_nsfw {
        Err(format!(
            "workflow {workflow} is marked NSFW; use it in an age-restricted channel."
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(guild: Option<u64>, channel: u64, roles: &[u64]) -> Caller {
        Caller {
            user: 5,
            guild,
            channel,
            roles: roles.to_vec(),
            private_dm: false,
        }
    }

    #[test]
    fn open_config_allows_guilds_but_not_dms() {
        let cfg = DiscordConfig::default();
        assert!(may_generate(&cfg, &caller(Some(1), 2, &[])).is_ok());
        assert!(may_generate(&cfg, &caller(None, 2, &[]))
            .unwrap_err()
            .contains("direct messages"));
    }

    #[test]
    fn guild_channel_and_role_rules() {
        let cfg = DiscordConfig {
            allowed_guilds: vec![1],
            allowed_channels: vec![10, 11],
            allowed_roles: vec![100],
            admin_roles: vec![900],
            ..DiscordConfig::default()
        };
        assert!(may_generate(&cfg, &caller(Some(2), 10, &[100]))
            .unwrap_err()
            .contains("server"));
        let e = may_generate(&cfg, &caller(Some(1), 12, &[100])).unwrap_err();
        assert!(e.contains("<#10>, <#11>"), "{e}");
        let e = may_generate(&cfg, &caller(Some(1), 10, &[7])).unwrap_err();
        assert!(e.contains("<@&100>"), "{e}");
        assert!(may_generate(&cfg, &caller(Some(1), 10, &[100])).is_ok());
        // Admins need no generating role.
        assert!(may_generate(&cfg, &caller(Some(1), 10, &[900])).is_ok());
        assert!(is_admin(&cfg, &caller(Some(1), 10, &[900])));
        assert!(!is_admin(&cfg, &caller(Some(1), 10, &[100])));
    }

    #[test]
    fn nsfw_only_in_age_restricted_channels() {
        assert!(nsfw_allowed("x", true, false)
            .unwrap_err()
            .contains("age-restricted"));
        assert!(nsfw_allowed("x", true, true).is_ok());
        assert!(nsfw_allowed("x", false, false).is_ok());
    }
}
