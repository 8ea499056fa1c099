//! Per-user and global rate limits, and caps on pending jobs. Admins bypass all of them.
//! The per-user state forgets idle users ([`Limiter::prune`]), so memory stays bounded.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::refusal::Refusal;

/// The limits: config.json's `limits` section, read as is.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests one user may make per minute (sustained).
    pub user_per_minute: u32,
    /// Requests one user may make at once after being idle.
    pub user_burst: u32,
    pub global_per_minute: u32,
    pub global_burst: u32,
    /// Jobs one user may have waiting or running.
    pub max_pending_per_user: usize,
    /// Jobs waiting or running in all.
    pub max_queue_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            user_per_minute: 6,
            user_burst: 3,
            global_per_minute: 120,
            global_burst: 20,
            max_pending_per_user: 3,
            max_queue_depth: 100,
        }
    }
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

type UserLimiter<C> =
    RateLimiter<u64, DashMapStateStore<u64>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type GlobalLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Decides whether a request may be queued now.
pub struct Limiter<C: Clock = DefaultClock> {
    per_user: UserLimiter<C>,
    global: GlobalLimiter<C>,
    clock: C,
    config: LimitsConfig,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .field("tracked_users", &self.per_user.len())
            .finish()
    }
}

/// Whole seconds to wait, never 0 (a user told "0 s" would retry at once and fail again).
fn secs_ceil(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl Limiter<DefaultClock> {
    pub fn new(config: LimitsConfig) -> Self {
        Limiter::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(config: LimitsConfig, clock: C) -> Self {
        Limiter {
            per_user: RateLimiter::dashmap_with_clock(
                quota(config.user_per_minute, config.user_burst),
                clock.clone(),
            ),
            global: RateLimiter::direct_with_clock(
                quota(config.global_per_minute, config.global_burst),
                clock.clone(),
            ),
            clock,
            config,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Admits or refuses one request. Caps are checked before any rate token is spent, and the
    /// user's own limit before the global one, so one fast user cannot drain everyone's budget.
    pub fn admit(
        &self,
        user: u64,
        is_admin: bool,
        pending_for_user: usize,
        queue_depth: usize,
    ) -> Result<(), Refusal> {
        if is_admin {
            return Ok(());
        }
        if pending_for_user >= self.config.max_pending_per_user {
            return Err(Refusal::TooManyPending {
                pending: pending_for_user,
                max: self.config.max_pending_per_user,
            });
        }
        if queue_depth >= self.config.max_queue_depth {
            return Err(Refusal::QueueFull { depth: queue_depth });
        }
        self.per_user
            .check_key(&user)
            .map_err(|not_until| Refusal::RateLimited {
                retry_after_secs: secs_ceil(not_until.wait_time_from(self.clock.now())),
            })?;
        self.global
            .check()
            .map_err(|not_until| Refusal::GloballyRateLimited {
                retry_after_secs: secs_ceil(not_until.wait_time_from(self.clock.now())),
            })?;
        Ok(())
    }

    /// Forgets users whose limit has fully recovered. Call it periodically.
    pub fn prune(&self) {
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
    }

    /// Users currently remembered.
    pub fn tracked_users(&self) -> usize {
        self.per_user.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(config: LimitsConfig) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limiter::with_clock(config, clock.clone()), clock)
    }

    #[test]
    fn per_user_burst_then_refusal_with_retry_time() {
        let (l, clock) = limiter(LimitsConfig {
            user_per_minute: 6,
            user_burst: 2,
            ..LimitsConfig::default()
        });
        assert!(l.admit(1, false, 0, 0).is_ok());
        assert!(l.admit(1, false, 0, 0).is_ok());
        // The third within the burst window is refused: one token every 10 s.
        assert_eq!(
            l.admit(1, false, 0, 0),
            Err(Refusal::RateLimited {
                retry_after_secs: 10
            })
        );
        assert_eq!(
            l.admit(1, false, 0, 0).unwrap_err().to_string(),
            "you are going too fast; try again in 10 s"
        );
        // Another user is unaffected.
        assert!(l.admit(2, false, 0, 0).is_ok());
        clock.advance(Duration::from_millis(9_500));
        assert_eq!(
            l.admit(1, false, 0, 0),
            Err(Refusal::RateLimited {
                retry_after_secs: 1
            })
        );
        clock.advance(Duration::from_millis(500));
        assert!(l.admit(1, false, 0, 0).is_ok());
    }

    #[test]
    fn global_limit_applies_across_users() {
        let (l, _) = limiter(LimitsConfig {
            global_per_minute: 60,
            global_burst: 3,
            ..LimitsConfig::default()
        });
        for user in 0..3 {
            assert!(l.admit(user, false, 0, 0).is_ok());
        }
        assert_eq!(
            l.admit(9, false, 0, 0),
            Err(Refusal::GloballyRateLimited {
                retry_after_secs: 1
            })
        );
    }

    #[test]
    fn caps_on_both_sides() {
        let (l, _) = limiter(LimitsConfig {
            max_pending_per_user: 2,
            max_queue_depth: 10,
            user_burst: 100,
            user_per_minute: 100,
            ..LimitsConfig::default()
        });
        assert!(l.admit(1, false, 1, 9).is_ok());
        assert_eq!(
            l.admit(1, false, 2, 0),
            Err(Refusal::TooManyPending { pending: 2, max: 2 })
        );
        assert_eq!(
            l.admit(1, false, 0, 10),
            Err(Refusal::QueueFull { depth: 10 })
        );
        // Admins bypass caps and rates.
        assert!(l.admit(1, true, 50, 500).is_ok());
    }

    #[test]
    fn refused_cap_spends_no_token() {
        let (l, _) = limiter(LimitsConfig {
            user_burst: 1,
            max_pending_per_user: 1,
            ..LimitsConfig::default()
        });
        assert!(l.admit(1, false, 1, 0).is_err());
        assert!(
            l.admit(1, false, 0, 0).is_ok(),
            "the cap refusal must not have used the token"
        );
    }

    #[test]
    fn memory_stays_bounded_with_many_users() {
        let (l, clock) = limiter(LimitsConfig {
            global_per_minute: 1_000_000,
            global_burst: 1_000_000,
            ..LimitsConfig::default()
        });
        for user in 0..10_000 {
            assert!(l.admit(user, false, 0, 0).is_ok());
        }
        assert_eq!(l.tracked_users(), 10_000);
        clock.advance(Duration::from_secs(60));
        l.prune();
        assert_eq!(l.tracked_users(), 0);
    }
}
