//! A bound on how often one kind of message is logged: a mount whose server is gone can fail
//! thousands of reads a second, and an operator needs the first few and a count, not a
//! flooded journal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `burst` messages per `window`; the rest are counted and reported once the
/// next window opens.
pub struct RateLimit {
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` messages were dropped in the windows since the last one logged.
    Log { suppressed: u64 },
    /// Drop it.
    Drop,
}

impl RateLimit {
    pub const fn new(burst: u32, window: Duration) -> Self {
        RateLimit {
            burst,
            window,
            state: Mutex::new(State {
                started: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Decides on one message at `now`.
    pub fn check(&self, now: Instant) -> Verdict {
        let mut s = self.state.lock().expect("rate limit");
        if s.started
            .is_none_or(|t| now.duration_since(t) >= self.window)
        {
            s.started = Some(now);
            s.logged = 0;
        }
        if s.logged < self.burst {
            s.logged += 1;
            Verdict::Log {
                suppressed: std::mem::take(&mut s.suppressed),
            }
        } else {
            s.suppressed += 1;
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_counts() {
        let r = RateLimit::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(r.check(t), Verdict::Log { suppressed: 0 });
        assert_eq!(r.check(t), Verdict::Log { suppressed: 0 });
        assert_eq!(r.check(t), Verdict::Drop);
        assert_eq!(r.check(t + Duration::from_secs(1)), Verdict::Drop);
        let later = t + Duration::from_secs(10);
        assert_eq!(r.check(later), Verdict::Log { suppressed: 2 });
        assert_eq!(r.check(later), Verdict::Log { suppressed: 0 });
    }
}
