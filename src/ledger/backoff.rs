//! Retry schedule: a pure function of the attempt number (DESIGN §2). The result is stored as the
//! job's `run_at`; nothing here sleeps or remembers anything.

use std::time::Duration;

use crate::timestamp::Timestamp;

/// Exponential backoff with jitter: `base · 2^(attempt-1)`, capped at `max`, then spread by
/// ±`jitter` (a fraction), never below a server's `Retry-After`, never above `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Fraction of the delay to spread by, in `[0, 1)`; 0.2 means ±20 %.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max: Duration::from_secs(6 * 60 * 60),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1 = the first attempt).
    ///
    /// `jitter_sample` is a number in `[-1, 1]` (random in production, fixed in tests);
    /// `retry_after` is the peer's `Retry-After`, which raises the delay (still capped at `max`,
    /// so a peer cannot park a job for longer than the policy allows).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter_sample: f64,
    ) -> Duration {
        let exponent = attempt.saturating_sub(1).min(63);
        let exponential = self
            .base
            .checked_mul(1u32.checked_shl(exponent.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let spread = 1.0 + self.jitter.clamp(0.0, 0.99) * jitter_sample.clamp(-1.0, 1.0);
        let jittered = exponential.mul_f64(spread).min(self.max);
        jittered.max(retry_after.unwrap_or(Duration::ZERO).min(self.max))
    }

    /// When a job whose attempt `attempt` failed at `now` runs next, with random jitter.
    pub fn next_run_at(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        now: Timestamp,
    ) -> Timestamp {
        let sample = rand::random_range(-1.0..=1.0);
        now.plus(self.delay(attempt, retry_after, sample))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(6 * 3600),
            jitter: 0.2,
        }
    }

    #[test]
    fn doubles_from_base_until_the_cap() {
        let p = policy();
        let cases = [
            (1, 30),
            (2, 60),
            (3, 120),
            (4, 240),
            (9, 7680),
            (10, 15360),
            (11, 21600),
            (12, 21600),
        ];
        for (attempt, secs) in cases {
            assert_eq!(
                p.delay(attempt, None, 0.0),
                Duration::from_secs(secs),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn grows_monotonically_before_the_cap_even_with_worst_case_jitter() {
        let p = Backoff {
            jitter: 0.3,
            ..policy()
        };
        for attempt in 1..=9 {
            let high = p.delay(attempt, None, 1.0);
            let next_low = p.delay(attempt + 1, None, -1.0);
            assert!(
                next_low >= high.mul_f64(0.99),
                "attempt {attempt}: {next_low:?} < {high:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_bounds_and_under_the_cap() {
        let p = policy();
        for attempt in 1..=40 {
            for sample in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                let d = p.delay(attempt, None, sample);
                let nominal = p.delay(attempt, None, 0.0);
                assert!(d <= p.max);
                assert!(d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2).min(p.max));
            }
        }
    }

    #[test]
    fn retry_after_raises_the_delay_but_not_past_the_cap() {
        let p = policy();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(120)), 0.0),
            Duration::from_secs(120)
        );
        assert_eq!(
            p.delay(3, Some(Duration::from_secs(5)), 0.0),
            Duration::from_secs(120)
        );
        assert_eq!(p.delay(1, Some(Duration::from_secs(999_999)), 0.0), p.max);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = policy();
        assert_eq!(p.delay(u32::MAX, None, 0.0), p.max);
        assert_eq!(p.delay(0, None, 0.0), p.base);
    }

    #[test]
    fn next_run_at_is_in_the_future_by_about_the_delay() {
        let now = Timestamp::now();
        let at = policy().next_run_at(2, None, now);
        let d = at.since(now);
        assert!(
            d >= Duration::from_secs(48) && d <= Duration::from_secs(72),
            "{d:?}"
        );
    }
}
