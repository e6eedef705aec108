//! The resource router: for each utterance and stage, local or online, from
//! live signals — the local engines' health, the utterances ahead on them
//! against their measured service time and the utterance's latency budget,
//! and host pressure (CPU, memory, GPU memory) — within what the privacy
//! policy allows. Every decision carries its reason into the audit record
//! and the metrics.
//!
//! The two local engines share one lane (`crate::local::LocalLane`): two
//! ggml processes computing at once on a small box collapse, so local work
//! for different utterances never overlaps.

use std::time::Duration;

use serde::Serialize;

use crate::config::OnlineConfig;
use crate::host::Pressure;

/// Where a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// On the box's own engine.
    Local,
    /// On the online API.
    Online,
}

/// Why a stage runs where it runs: the reason codes of the audit record and
/// the metrics, serialized as they always were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Local: the lane finishes within the budget.
    WithinBudget,
    /// Local: no online endpoint for this stage.
    OnlineOff,
    /// Local: the privacy policy keeps this stage on the box.
    Privacy,
    /// Local: a device the words name is `never` in `online.devices`.
    DeviceLocalOnly,
    /// Local: every online endpoint's breaker is open.
    OnlineUnavailable,
    /// Local: the words settle it; no model is asked.
    WordsOnly,
    /// Online: the local engine is down or restarting.
    LocalDown,
    /// Online: the lane cannot finish within the budget.
    OverBudget,
    /// Online: CPU at or past its threshold.
    CpuPressure,
    /// Online: memory at or past its threshold.
    MemoryPressure,
    /// Online: GPU memory at or past its threshold.
    GpuMemoryPressure,
}

impl Reason {
    /// The reason's name in audit records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WithinBudget => "within_budget",
            Reason::OnlineOff => "online_off",
            Reason::Privacy => "privacy",
            Reason::DeviceLocalOnly => "device_local_only",
            Reason::OnlineUnavailable => "online_unavailable",
            Reason::WordsOnly => "words_only",
            Reason::LocalDown => "local_down",
            Reason::OverBudget => "over_budget",
            Reason::CpuPressure => "cpu_pressure",
            Reason::MemoryPressure => "memory_pressure",
            Reason::GpuMemoryPressure => "gpu_memory_pressure",
        }
    }
}

/// One routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Where.
    #[serde(rename = "where")]
    pub place: Place,
    /// Why.
    pub reason: Reason,
}

impl Route {
    /// Local, for `reason`.
    pub const fn local(reason: Reason) -> Route {
        Route { place: Place::Local, reason }
    }

    const fn online(reason: Reason) -> Route {
        Route { place: Place::Online, reason }
    }
}

/// The live signals for one decision.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    /// Whether the stage's local engine is up (not crashed or restarting).
    pub local_up: bool,
    /// Predicted wait for the local lane: utterances ahead × their measured service time.
    pub local_wait: Duration,
    /// Measured local time of what is left of this utterance (both stages, or intent alone).
    pub local_service: Duration,
    /// End of speech → now.
    pub elapsed: Duration,
    /// The latest host reading.
    pub pressure: Pressure,
}

/// The thresholds a decision weighs the signals against.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// End of speech → commands decided.
    pub budget: Duration,
    /// Load per core (1.0 = 100 %).
    pub cpu_load: f64,
    /// Share of memory in use.
    pub memory_used: f64,
    /// Share of GPU memory in use.
    pub gpu_memory_used: f64,
}

impl Thresholds {
    /// The thresholds of `[online]`.
    pub fn of(config: &OnlineConfig) -> Thresholds {
        Thresholds {
            budget: Duration::from_millis(config.budget_ms),
            cpu_load: config.cpu_threshold_percent / 100.0,
            memory_used: config.memory_threshold_percent / 100.0,
            gpu_memory_used: config.gpu_memory_threshold_percent / 100.0,
        }
    }
}

/// Decides one stage. `refusal` is why the stage may not go online (no
/// endpoint, privacy, a local-only device, every breaker open), if it may not:
/// then it stays local whatever the load, and waits for the lane or a
/// restarting engine.
pub fn decide(thresholds: &Thresholds, signals: &Signals, refusal: Option<Reason>) -> Route {
    if let Some(reason) = refusal {
        return Route::local(reason);
    }
    if !signals.local_up {
        return Route::online(Reason::LocalDown);
    }
    let over = |reading: Option<f64>, limit: f64| reading.is_some_and(|r| r >= limit);
    if over(signals.pressure.memory_used, thresholds.memory_used) {
        return Route::online(Reason::MemoryPressure);
    }
    if over(signals.pressure.gpu_memory_used, thresholds.gpu_memory_used) {
        return Route::online(Reason::GpuMemoryPressure);
    }
    if over(signals.pressure.cpu_load, thresholds.cpu_load) {
        return Route::online(Reason::CpuPressure);
    }
    let finish = signals.elapsed + signals.local_wait + signals.local_service;
    if finish > thresholds.budget {
        return Route::online(Reason::OverBudget);
    }
    Route::local(Reason::WithinBudget)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds { budget: Duration::from_millis(400), cpu_load: 0.85, memory_used: 0.9, gpu_memory_used: 0.9 }
    }

    fn idle() -> Signals {
        Signals {
            local_up: true,
            local_wait: Duration::ZERO,
            local_service: Duration::from_millis(200),
            elapsed: Duration::from_millis(10),
            pressure: Pressure { cpu_load: Some(0.2), memory_used: Some(0.3), gpu_memory_used: None },
        }
    }

    #[test]
    fn an_idle_box_keeps_work_local() {
        assert_eq!(decide(&thresholds(), &idle(), None), Route::local(Reason::WithinBudget));
    }

    #[test]
    fn work_the_lane_cannot_finish_within_the_budget_goes_online() {
        let one_ahead = Signals { local_wait: Duration::from_millis(200), ..idle() };
        assert_eq!(decide(&thresholds(), &one_ahead, None), Route::online(Reason::OverBudget));
        let late = Signals { elapsed: Duration::from_millis(250), ..idle() };
        assert_eq!(decide(&thresholds(), &late, None), Route::online(Reason::OverBudget));
    }

    #[test]
    fn a_down_engine_and_host_pressure_send_work_online() {
        assert_eq!(
            decide(&thresholds(), &Signals { local_up: false, ..idle() }, None),
            Route::online(Reason::LocalDown)
        );
        let cpu = Signals { pressure: Pressure { cpu_load: Some(0.85), ..idle().pressure }, ..idle() };
        assert_eq!(decide(&thresholds(), &cpu, None), Route::online(Reason::CpuPressure));
        let memory = Signals { pressure: Pressure { memory_used: Some(0.95), ..idle().pressure }, ..idle() };
        assert_eq!(decide(&thresholds(), &memory, None), Route::online(Reason::MemoryPressure));
        let gpu = Signals { pressure: Pressure { gpu_memory_used: Some(0.91), ..idle().pressure }, ..idle() };
        assert_eq!(decide(&thresholds(), &gpu, None), Route::online(Reason::GpuMemoryPressure));
        let unread = Signals { pressure: Pressure::default(), ..idle() };
        assert_eq!(
            decide(&thresholds(), &unread, None),
            Route::local(Reason::WithinBudget),
            "no reading is no pressure"
        );
    }

    #[test]
    fn a_refusal_keeps_work_local_even_when_the_engine_is_down() {
        let down = Signals { local_up: false, local_wait: Duration::from_secs(1), ..idle() };
        assert_eq!(decide(&thresholds(), &down, Some(Reason::Privacy)), Route::local(Reason::Privacy));
        assert_eq!(decide(&thresholds(), &down, Some(Reason::DeviceLocalOnly)), Route::local(Reason::DeviceLocalOnly));
    }
}
