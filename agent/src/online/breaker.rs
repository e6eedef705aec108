//! A circuit breaker per online endpoint: after `failures` failures in a row
//! it opens and the endpoint is skipped (no request sent) for `open_for`;
//! then one probe request is let through. A success closes it, a failure
//! opens it again. It keeps a failing API from being hammered while every
//! utterance waits for its timeouts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Requests are skipped until the instant; then one probe.
    Open(Instant),
    /// One probe, sent at the instant, is in flight; others are skipped until
    /// it answers (or, should it never answer, for another open period).
    Probing(Instant),
}

/// The breaker of one endpoint (shared by every utterance that uses it).
#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
}

impl Breaker {
    /// A closed breaker that opens after `failures_to_open` failures in a row, for `open_for`.
    pub fn new(failures_to_open: u32, open_for: Duration) -> Breaker {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            open_for,
            inner: Mutex::new(Inner { state: BreakerState::Closed, failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may be sent at `now` (an open breaker past its time
    /// lets exactly one probe through and counts it as in flight).
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open(until) if now >= until => {
                inner.state = BreakerState::Probing(now);
                true
            }
            BreakerState::Probing(since) if now >= since + self.open_for => {
                inner.state = BreakerState::Probing(now);
                true
            }
            BreakerState::Open(_) | BreakerState::Probing(_) => false,
        }
    }

    /// Whether a request would be let through at `now`, without taking the probe.
    pub fn would_allow(&self, now: Instant) -> bool {
        match self.lock().state {
            BreakerState::Closed => true,
            BreakerState::Open(until) => now >= until,
            BreakerState::Probing(since) => now >= since + self.open_for,
        }
    }

    /// A request answered: the breaker closes.
    pub fn succeeded(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.failures = 0;
    }

    /// A request failed at `now`; returns true when this opened the breaker.
    pub fn failed(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        let opens = matches!(inner.state, BreakerState::Probing(_)) || inner.failures >= self.failures_to_open;
        let was_open = matches!(inner.state, BreakerState::Open(_));
        if opens {
            inner.state = BreakerState::Open(now + self.open_for);
        }
        opens && !was_open
    }

    #[cfg(test)]
    fn state(&self) -> BreakerState {
        self.lock().state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let breaker = Breaker::new(3, Duration::from_secs(10));
        let now = Instant::now();
        assert!(!breaker.failed(now));
        assert!(!breaker.failed(now));
        breaker.succeeded();
        assert!(!breaker.failed(now));
        assert!(!breaker.failed(now));
        assert!(breaker.allow(now));
        assert!(breaker.failed(now), "the third failure in a row opens it");
        assert!(!breaker.allow(now + Duration::from_secs(9)));
        assert!(!breaker.would_allow(now + Duration::from_secs(9)));
    }

    #[test]
    fn after_the_open_time_one_probe_goes_through_and_its_answer_decides() {
        let breaker = Breaker::new(1, Duration::from_secs(10));
        let now = Instant::now();
        assert!(breaker.failed(now));
        let later = now + Duration::from_secs(10);
        assert!(breaker.would_allow(later));
        assert!(breaker.allow(later), "the probe");
        assert!(!breaker.allow(later), "only one probe at a time");
        assert!(breaker.allow(later + Duration::from_secs(10)), "a probe that never answered is replaced");
        assert!(breaker.failed(later), "a failed probe opens it again");
        assert_eq!(breaker.state(), BreakerState::Open(later + Duration::from_secs(10)));
        let much_later = later + Duration::from_secs(10);
        assert!(breaker.allow(much_later));
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.allow(much_later));
    }
}
