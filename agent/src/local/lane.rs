//! The local engines' lane: two ggml processes computing at once on a small
//! box collapse, so one utterance computes on the local engines at a time and
//! the others wait in order. The router reads how many are ahead and how long
//! each takes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// First guesses of the local stage times, until utterances have been measured.
const INITIAL_STT: Duration = Duration::from_millis(250);
const INITIAL_INTENT: Duration = Duration::from_millis(50);

/// The local engines' lane: one utterance computes on them at a time; the
/// others wait in order. It knows how many are ahead and how long each takes.
#[derive(Clone)]
pub struct LocalLane {
    inner: Arc<LaneInner>,
}

struct LaneInner {
    permit: Arc<tokio::sync::Semaphore>,
    ahead: AtomicUsize,
    stt_us: AtomicU64,
    intent_us: AtomicU64,
}

/// An utterance's turn on the local engines; dropping it lets the next one in.
pub struct Turn {
    lane: LocalLane,
    // Never closed, so always held; `None` only if it were.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.lane.inner.ahead.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for LocalLane {
    fn default() -> Self {
        LocalLane {
            inner: Arc::new(LaneInner {
                permit: Arc::new(tokio::sync::Semaphore::new(1)),
                ahead: AtomicUsize::new(0),
                stt_us: AtomicU64::new(INITIAL_STT.as_micros() as u64),
                intent_us: AtomicU64::new(INITIAL_INTENT.as_micros() as u64),
            }),
        }
    }
}

impl LocalLane {
    /// Utterances holding or waiting for the lane.
    pub fn ahead(&self) -> usize {
        self.inner.ahead.load(Ordering::Relaxed)
    }

    /// The measured local speech-to-text time (a moving average).
    pub fn stt_service(&self) -> Duration {
        Duration::from_micros(self.inner.stt_us.load(Ordering::Relaxed))
    }

    /// The measured local intent time (a moving average).
    pub fn intent_service(&self) -> Duration {
        Duration::from_micros(self.inner.intent_us.load(Ordering::Relaxed))
    }

    /// Predicted wait for a turn, with `ahead` utterances holding or waiting for it.
    pub fn wait(&self, ahead: usize) -> Duration {
        (self.stt_service() + self.intent_service()) * ahead as u32
    }

    /// Folds a measured local transcription time into its average (weight 1/4).
    pub fn measured_stt(&self, took: Duration) {
        fold(&self.inner.stt_us, took);
    }

    /// Folds a measured local intent time into its average (weight 1/4).
    pub fn measured_intent(&self, took: Duration) {
        fold(&self.inner.intent_us, took);
    }

    /// Waits for the lane (counted as ahead of later utterances from now on).
    pub async fn enter(&self) -> Turn {
        self.inner.ahead.fetch_add(1, Ordering::Relaxed);
        // Built before waiting, so a cancelled wait still takes itself off the count.
        let mut turn = Turn { lane: self.clone(), _permit: None };
        turn._permit = self.inner.permit.clone().acquire_owned().await.ok();
        turn
    }
}

fn fold(average_us: &AtomicU64, took: Duration) {
    let old = average_us.load(Ordering::Relaxed);
    average_us.store((old * 3 + took.as_micros() as u64) / 4, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_lane_counts_who_is_ahead_and_lets_one_in_at_a_time() {
        let lane = LocalLane::default();
        let first = lane.enter().await;
        assert_eq!(lane.ahead(), 1);
        let second_lane = lane.clone();
        let second = tokio::spawn(async move { second_lane.enter().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(lane.ahead(), 2);
        assert!(!second.is_finished(), "the second waits for the first");
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(lane.ahead(), 1);
        drop(second);
        assert_eq!(lane.ahead(), 0);
        lane.measured_stt(Duration::from_millis(150));
        assert_eq!(lane.stt_service(), Duration::from_millis(225));
        assert_eq!(lane.wait(2), 2 * (Duration::from_millis(225) + lane.intent_service()));
    }
}
