//! Container restart backoff as the kubelet does it: the first restart is immediate, then
//! 10s, 20s, 40s, ... capped at 5 minutes, and a container that ran 10 minutes since the last
//! restart starts over (kubelet: kuberuntime_manager.go doBackOff + client-go
//! flowcontrol.Backoff with backOffPeriod 10s, MaxContainerBackOff 300s).

use std::time::{Duration, Instant};

/// The backoff parameters; [`BackoffConfig::default`] is the kubelet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first non-zero delay (kubelet: 10s).
    pub initial: Duration,
    /// The cap (kubelet: 5 minutes).
    pub max: Duration,
    /// After this long without a restart the delay starts over (kubelet: 2 x max).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl BackoffConfig {
    /// The kubelet's shape with another base: `initial`, cap 30 x `initial`, reset after
    /// 60 x `initial` (tests use a base of milliseconds).
    pub fn with_initial(initial: Duration) -> Self {
        BackoffConfig {
            initial,
            max: initial * 30,
            reset_after: initial * 60,
        }
    }
}

/// One container's backoff: data, updated only through [`Backoff::next_delay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the next failure will wait; `None` before the first failure.
    pub delay: Option<Duration>,
    /// When the delay was last advanced (the previous failure's time).
    pub last_update: Option<Instant>,
}

impl Backoff {
    /// A container failed at `failed_at`: how long to wait before restarting it, and the
    /// backoff to keep for the next failure. Pure.
    pub fn next_delay(&self, cfg: &BackoffConfig, failed_at: Instant) -> (Duration, Backoff) {
        let expired = match self.last_update {
            None => true,
            Some(last) => failed_at.saturating_duration_since(last) > cfg.reset_after,
        };
        let (wait, following) = match self.delay {
            Some(d) if !expired => (d, d.saturating_mul(2).min(cfg.max)),
            _ => (Duration::ZERO, cfg.initial.min(cfg.max)),
        };
        (
            wait,
            Backoff {
                delay: Some(following),
                last_update: Some(failed_at),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_from_ten_seconds_and_caps_at_five_minutes() {
        let cfg = BackoffConfig::default();
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..9 {
            let (wait, next) = b.next_delay(&cfg, now);
            waits.push(wait.as_secs());
            b = next;
            // The container runs one second after each restart, then fails again.
            now += wait + secs(1);
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_without_failure() {
        let cfg = BackoffConfig::default();
        let t0 = Instant::now();
        let (_, b) = Backoff::default().next_delay(&cfg, t0);
        let (w, b) = b.next_delay(&cfg, t0 + secs(5));
        assert_eq!(w, secs(10));
        let (w, _) = b.next_delay(&cfg, t0 + secs(5) + secs(601));
        assert_eq!(w, Duration::ZERO);
        // Exactly at the reset bound it still backs off.
        let (w, _) = b.next_delay(&cfg, t0 + secs(5) + secs(600));
        assert_eq!(w, secs(20));
    }

    #[test]
    fn small_base_for_tests() {
        let cfg = BackoffConfig::with_initial(Duration::from_millis(100));
        assert_eq!(cfg.max, secs(3));
        assert_eq!(cfg.reset_after, secs(6));
    }
}
