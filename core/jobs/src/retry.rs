//! Retry policy: exponential backoff with jitter, capped, and a maximum number of attempts
//! after which a job (or outbox message) goes to the dead letters.

use std::time::Duration;

/// How failed work is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt (before jitter); doubles with every further attempt.
    pub base: Duration,
    /// Longest delay between two attempts.
    pub cap: Duration,
    /// Attempts in all (the first one included); 1 means never retried.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
            max_attempts: 8,
        }
    }
}

/// Most attempts a job may be given (keeps a misconfiguration from retrying forever).
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

impl RetryPolicy {
    /// The delay before the attempt after `attempt` failed, before jitter:
    /// `min(cap, base · 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << exp;
        let nanos = self.base.as_nanos().saturating_mul(u128::from(factor));
        let capped = nanos.min(self.cap.as_nanos());
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }

    /// The delay actually used: "equal jitter", uniformly in `[backoff/2, backoff]`, so
    /// workers that failed together do not retry together, and no retry comes immediately.
    pub fn delay(&self, attempt: u32) -> Duration {
        let d = self.backoff(attempt);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        if span == 0 {
            return d;
        }
        half + Duration::from_nanos(random_u64() % (span + 1))
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(crate::JobsError::Invalid(format!(
                "max_attempts must be 1..={MAX_ATTEMPTS_LIMIT}"
            )));
        }
        if self.cap < self.base {
            return Err(crate::JobsError::Invalid(
                "retry cap must not be below the base delay".into(),
            ));
        }
        Ok(())
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // Jitter only spreads retries; the clock's nanoseconds do that well enough.
        return chrono::Utc::now().timestamp_subsec_nanos().into();
    }
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_attempts: 10,
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_secs(1));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(1));
        for attempt in 1..20 {
            let d = p.delay(attempt);
            assert!(
                d >= p.backoff(attempt) / 2 && d <= p.backoff(attempt),
                "{d:?}"
            );
        }
    }

    #[test]
    fn validates() {
        assert!(RetryPolicy::default().validate().is_ok());
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(zero.validate().is_err());
        let inverted = RetryPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(1),
            max_attempts: 3,
        };
        assert!(inverted.validate().is_err());
    }
}
