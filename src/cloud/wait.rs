//! Polling waiters: capped exponential backoff with jitter and a deadline.

use std::time::{Duration, Instant};

use super::CloudError;

/// One observation of the thing being waited on.
pub enum Poll<T> {
    /// Done; the final value.
    Ready(T),
    /// Not yet; the state as AWS reports it (shown in the progress line).
    Pending(String),
    /// It will never get there (e.g. an instance that went to `terminated`).
    Failed(String),
}

/// How long and how often to poll.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub timeout: Duration,
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(timeout: Duration) -> Self {
        Backoff {
            timeout,
            first: Duration::from_secs(2),
            max: Duration::from_secs(15),
        }
    }

    /// The delay before poll number `attempt` (0-based), ±20 % jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.first.as_millis() as f64 * 1.5f64.powi(attempt as i32);
        let capped = base.min(self.max.as_millis() as f64);
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        Duration::from_millis((capped * jitter) as u64)
    }
}

/// Poll `check` until it is ready, fails, or the deadline passes. `on_state` sees every
/// pending state with the time left, for the progress line.
pub fn poll_until<T>(
    service: &'static str,
    what: &str,
    backoff: Backoff,
    mut on_state: impl FnMut(&str, Duration),
    mut check: impl FnMut() -> Result<Poll<T>, CloudError>,
) -> Result<T, CloudError> {
    let start = Instant::now();
    let deadline = start + backoff.timeout;
    let mut attempt = 0;
    loop {
        if crate::interrupt::requested() {
            return Err(CloudError::new(
                service,
                format!("wait for {what}"),
                "Interrupted",
                "interrupted by Ctrl-C",
            ));
        }
        match check()? {
            Poll::Ready(v) => return Ok(v),
            Poll::Failed(state) => {
                return Err(CloudError::new(
                    service,
                    format!("wait for {what}"),
                    "WaitFailed",
                    format!("{what} went to `{state}` and will not recover"),
                ))
            }
            Poll::Pending(state) => {
                let now = Instant::now();
                if now >= deadline {
                    let mut e = CloudError::new(
                        service,
                        format!("wait for {what}"),
                        "WaitTimeout",
                        format!(
                            "{what} still `{state}` after {}s",
                            backoff.timeout.as_secs()
                        ),
                    );
                    e.hint = Some(
                        "AWS is slower than the recipe allows; raise the wait's timeout or run again (the run resumes where it stopped)".into(),
                    );
                    return Err(e);
                }
                on_state(&state, deadline - now);
                let sleep = backoff.delay(attempt).min(deadline - now);
                std::thread::sleep(sleep);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(timeout_ms: u64) -> Backoff {
        Backoff {
            timeout: Duration::from_millis(timeout_ms),
            first: Duration::from_millis(1),
            max: Duration::from_millis(5),
        }
    }

    #[test]
    fn returns_after_pending_states_and_reports_them() {
        let mut n = 0;
        let mut seen = Vec::new();
        let v = poll_until(
            "ec2",
            "instance i-1",
            quick(5_000),
            |s, _| seen.push(s.to_string()),
            || {
                n += 1;
                Ok(if n < 3 {
                    Poll::Pending(format!("pending{n}"))
                } else {
                    Poll::Ready(n)
                })
            },
        )
        .unwrap();
        assert_eq!(v, 3);
        assert_eq!(seen, ["pending1", "pending2"]);
    }

    #[test]
    fn times_out_with_the_last_state() {
        let e = poll_until(
            "efs",
            "mount target",
            quick(20),
            |_, _| {},
            || Ok(Poll::<()>::Pending("creating".into())),
        )
        .unwrap_err();
        assert_eq!(e.code, "WaitTimeout");
        assert!(e.message.contains("creating"), "{}", e.message);
    }

    #[test]
    fn failed_state_stops_at_once() {
        let e = poll_until(
            "ec2",
            "instance",
            quick(5_000),
            |_, _| {},
            || Ok(Poll::<()>::Failed("terminated".into())),
        )
        .unwrap_err();
        assert_eq!(e.code, "WaitFailed");
    }

    #[test]
    fn backoff_is_capped() {
        let b = Backoff::new(Duration::from_secs(60));
        assert!(b.delay(30) <= Duration::from_millis(18_000));
        assert!(b.delay(0) >= Duration::from_millis(1_600));
    }
}
