//! Retrying failed generations: exponential backoff with jitter that honours `Retry-After`.

use std::future::Future;
use std::time::Duration;

use super::LlmError;

/// How often and how patiently to retry a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Upper bound of any one delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Perstack's defaults: `maxRetries` tries after the first, starting at 1 s, at most 60 s apart.
    pub(crate) fn new(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }

    /// The delay before retry number `retry` (1-based): the server's `Retry-After` when it sent
    /// one, else `base · 2^(retry-1)` with ±25 % jitter so clients that failed together do not
    /// come back together.
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let jitter = 0.75 + 0.5 * unit_random();
        exp.mul_f64(jitter).min(self.max_delay)
    }

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, or the retries are
    /// spent. The error of the last attempt is returned with the number of retries made.
    #[cfg(test)]
    pub(crate) async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, (LlmError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        self.run_notifying(attempt, |_, _, _| {}).await
    }

    /// [`RetryPolicy::run`], telling `on_retry` about each failed attempt that will be retried:
    /// its error, the retry's number (1-based) and the wait before it.
    pub(crate) async fn run_notifying<T, F, Fut>(
        &self,
        mut attempt: F,
        mut on_retry: impl FnMut(&LlmError, u32, Duration),
    ) -> Result<T, (LlmError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable && retries < self.max_retries => {
                    retries += 1;
                    let delay = self.delay(retries, error.retry_after);
                    tracing::warn!(%error, retry = retries, ?delay, "generation failed; retrying");
                    on_retry(&error, retries, delay);
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err((error, retries)),
            }
        }
    }
}

fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let p = RetryPolicy::new(5);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn backoff_grows_with_jitter() {
        let p = RetryPolicy::new(5);
        let d1 = p.delay(1, None);
        let d3 = p.delay(3, None);
        assert!(d1 >= Duration::from_millis(750) && d1 <= Duration::from_millis(1250));
        assert!(d3 >= Duration::from_millis(3000) && d3 <= Duration::from_millis(5000));
    }

    #[tokio::test]
    async fn retries_retryable_errors_then_gives_up() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(LlmError::api(529, "Overloaded", None)) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(matches!(result, Err((_, 2))));
    }

    #[tokio::test]
    async fn does_not_retry_fatal_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run(|| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(LlmError::api(400, "bad request", None)) }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(result, Err((_, 0))));
    }
}
