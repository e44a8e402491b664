//! The pace a streamed request body must keep: whole within `timeouts.request_body` of its start,
//! and at least `timeouts.body_min_rate` bytes a second over each `timeouts.body_rate_window` of
//! time spent waiting for it. Time spent waiting for the server to take what was sent does not
//! count against the client. A body that falls behind ends the exchange with 408, and the
//! connection to the server is closed, so ten clients sending a byte a second hold no server
//! connection for longer than a window.

use std::future::Future;
use std::time::Duration;

use tether_model::file_config::Timeouts;
use tokio::time::Instant;

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Slow {
    #[error("the request body did not arrive whole within {0:?}")]
    Deadline(Duration),
    #[error("the request body arrived slower than {0} bytes a second")]
    Rate(u64),
}

/// One body's pace so far.
#[derive(Debug, Clone)]
pub struct Pace {
    whole: Duration,
    deadline: Instant,
    min_rate: u64,
    window: Duration,
    /// Time spent waiting in the current window, and the bytes that came in it.
    waited: Duration,
    got: u64,
}

impl Pace {
    /// The pace of a body starting now.
    pub fn new(t: &Timeouts) -> Pace {
        Pace {
            whole: t.request_body,
            deadline: Instant::now() + t.request_body,
            min_rate: t.body_min_rate,
            window: t.body_rate_window.max(Duration::from_millis(10)),
            waited: Duration::ZERO,
            got: 0,
        }
    }

    /// Await the body's next piece (`next`), within its deadline and its minimum rate.
    pub async fn next<F: Future>(&mut self, next: F) -> Result<F::Output, Slow> {
        tokio::pin!(next);
        loop {
            let started = Instant::now();
            let window_left = self.window.saturating_sub(self.waited);
            let until = self.deadline.min(started + window_left);
            let r = tokio::time::timeout_at(until, &mut next).await;
            self.waited += started.elapsed();
            let now = Instant::now();
            if now >= self.deadline {
                return Err(Slow::Deadline(self.whole));
            }
            if self.waited >= self.window {
                let needed = self.min_rate.saturating_mul(self.window.as_millis() as u64) / 1000;
                if self.got < needed {
                    return Err(Slow::Rate(self.min_rate));
                }
                self.waited = Duration::ZERO;
                self.got = 0;
            }
            if let Ok(out) = r {
                return Ok(out);
            }
        }
    }

    /// Count `n` bytes received.
    pub fn got(&mut self, n: usize) {
        self.got += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(whole_ms: u64, rate: u64, window_ms: u64) -> Timeouts {
        Timeouts {
            request_body: Duration::from_millis(whole_ms),
            body_min_rate: rate,
            body_rate_window: Duration::from_millis(window_ms),
            ..Timeouts::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_below_the_rate_is_cut_after_one_window() {
        let mut p = Pace::new(&timeouts(60_000, 1000, 1000));
        // One byte every 300 ms: 4 bytes in the first window, 1000 needed.
        let mut outcome = Ok(());
        for _ in 0..10 {
            match p.next(tokio::time::sleep(Duration::from_millis(300))).await {
                Ok(()) => p.got(1),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        assert_eq!(outcome, Err(Slow::Rate(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_rate_goes_on_until_its_deadline() {
        let mut p = Pace::new(&timeouts(5_000, 100, 1000));
        let mut pieces = 0;
        let e = loop {
            match p.next(tokio::time::sleep(Duration::from_millis(100))).await {
                Ok(()) => {
                    p.got(50);
                    pieces += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(e, Slow::Deadline(Duration::from_secs(5)));
        assert!(pieces >= 45, "{pieces}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_cut_after_a_window() {
        let mut p = Pace::new(&timeouts(60_000, 1, 2000));
        let r = p.next(std::future::pending::<()>()).await;
        assert_eq!(r, Err(Slow::Rate(1)));
    }
}
