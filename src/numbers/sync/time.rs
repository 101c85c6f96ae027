//! Time for the sync loop: where "now" and waits come from ([`Clock`]), and how long to
//! wait after an error ([`Backoff`]). Pure but for [`TokioClock`].

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use crate::msapi::{ApiError, BoxFuture};

/// Longest `Retry-After` honoured (a bogus header must not park the loop for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Where the loop gets time from.
pub trait Clock: Send + Sync {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (snapshot times, `last_sync_ok`).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()>;
}

/// The real clock: tokio's timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Exponential backoff with full jitter, bounded by `min` and `max`. Pure.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff between `min` and `max` (`max` raised to `min` if below).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// After a success: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait after `e`: uniform in `[min, min(max, min·2^attempt)]`; `max` when no
    /// retry can fix `e`; at least `Retry-After` (up to [`MAX_RETRY_AFTER`]) when throttled.
    pub fn next(&mut self, e: &ApiError, rng: &mut impl Rng) -> Duration {
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        if !e.is_retryable() {
            return self.max;
        }
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        let cap = self.min.saturating_mul(factor).min(self.max);
        let (lo, hi) = (self.min.as_millis() as u64, cap.as_millis() as u64);
        let d = Duration::from_millis(rng.random_range(lo..=hi.max(lo)));
        match e {
            ApiError::Throttled { retry_after_secs } => {
                d.max(Duration::from_secs(*retry_after_secs).min(MAX_RETRY_AFTER))
            }
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut b = Backoff::new(min, max);
        let mut r = rng();
        let e = ApiError::Transport("reset".into());
        for attempt in 0..40u32 {
            let d = b.next(&e, &mut r);
            let cap = min.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
            assert!(d >= min && d <= cap.min(max), "attempt {attempt}: {d:?}");
        }
        // Full jitter: late waits spread over the whole range.
        let late: Vec<_> = (0..200).map(|_| b.next(&e, &mut r)).collect();
        assert!(late.iter().any(|d| *d < Duration::from_secs(20)));
        assert!(late.iter().any(|d| *d > Duration::from_secs(40)));
        b.reset();
        assert!(b.next(&e, &mut r) <= Duration::from_secs(1));
    }

    #[test]
    fn throttling_waits_at_least_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut r = rng();
        let t = ApiError::Throttled {
            retry_after_secs: 30,
        };
        assert!((0..10).all(|_| b.next(&t, &mut r) >= Duration::from_secs(30)));
        let huge = ApiError::Throttled {
            retry_after_secs: u64::MAX,
        };
        assert_eq!(b.next(&huge, &mut r), MAX_RETRY_AFTER);
    }

    #[test]
    fn hopeless_errors_wait_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut r = rng();
        for e in [
            ApiError::Unauthorized("no".into()),
            ApiError::Decode("x".into()),
        ] {
            assert_eq!(b.next(&e, &mut r), Duration::from_secs(60));
        }
        let mut inverted = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        let d = inverted.next(&ApiError::Transport("x".into()), &mut r);
        assert_eq!(d, Duration::from_secs(5), "max is raised to min");
    }
}
