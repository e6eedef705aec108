//! Prometheus metrics: per-stage latency histograms, utterance, command and
//! outcome counters, dropped audio, engine restarts. Plain atomics rendered
//! in the text exposition format; served on `/metrics` when configured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0, 2.5, 10.0];

/// One latency histogram.
#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything the daemon counts. Shared by the pipeline stages.
#[derive(Default)]
pub struct Metrics {
    latencies: Mutex<BTreeMap<&'static str, Histogram>>,
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Utterances dropped because the queue to the engines was full.
    pub dropped_utterances: AtomicU64,
    /// The microphone's counters (dropped samples, device opens).
    pub capture: Arc<crate::audio::capture::CaptureStats>,
    /// Engine restarts, by engine.
    pub restarts: Mutex<BTreeMap<&'static str, u64>>,
    /// The latest host pressure sample.
    pub host: Mutex<crate::host::Pressure>,
}

impl Metrics {
    /// Records one stage's latency (`stt`, `nlu`, `mqtt`, `end_to_ack`, …).
    pub fn observe(&self, stage: &'static str, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let mut all = self.latencies.lock().unwrap_or_else(|p| p.into_inner());
        let histogram = all.entry(stage).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Adds one to a counter with one label value, e.g. (`commands`, `acknowledged`).
    pub fn count(&self, counter: &'static str, label: &str) {
        self.count_with(counter, &[(describe(counter).0, label)]);
    }

    /// Adds one to a counter with several labels, e.g. (`routes`, stage, where, reason).
    pub fn count_with(&self, counter: &'static str, labels: &[(&str, &str)]) {
        let rendered: Vec<String> = labels.iter().map(|(name, value)| format!("{name}=\"{value}\"")).collect();
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *all.entry((counter, rendered.join(","))).or_default() += 1;
    }

    /// Sets the restart count of an engine (read from its supervisor).
    pub fn set_restarts(&self, engine: &'static str, restarts: u64) {
        self.restarts.lock().unwrap_or_else(|p| p.into_inner()).insert(engine, restarts);
    }

    /// Keeps the latest host pressure sample for `/metrics` and the router.
    pub fn set_host(&self, pressure: crate::host::Pressure) {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = pressure;
    }

    /// The latest host pressure sample (what `/metrics` shows and the router weighs).
    pub fn host(&self) -> crate::host::Pressure {
        *self.host.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP hearken_stage_latency_seconds Latency of each pipeline stage.\n");
        out.push_str("# TYPE hearken_stage_latency_seconds histogram\n");
        for (stage, h) in self.latencies.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                out.push_str(&format!(
                    "hearken_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "hearken_stage_latency_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!("hearken_stage_latency_seconds_sum{{stage=\"{stage}\"}} {}\n", h.sum));
            out.push_str(&format!("hearken_stage_latency_seconds_count{{stage=\"{stage}\"}} {}\n", h.count));
        }
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if *name != last {
                let help = describe(name).1;
                out.push_str(&format!("# HELP hearken_{name}_total {help}\n# TYPE hearken_{name}_total counter\n"));
                last = name;
            }
            out.push_str(&format!("hearken_{name}_total{{{labels}}} {value}\n"));
        }
        out.push_str(
            "# HELP hearken_audio_dropped_utterances_total Utterances dropped because the engines were busy.\n",
        );
        out.push_str("# TYPE hearken_audio_dropped_utterances_total counter\n");
        out.push_str(&format!(
            "hearken_audio_dropped_utterances_total {}\n",
            self.dropped_utterances.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP hearken_audio_dropped_samples_total Samples the capture thread could not hand over.\n");
        out.push_str("# TYPE hearken_audio_dropped_samples_total counter\n");
        out.push_str(&format!(
            "hearken_audio_dropped_samples_total {}\n",
            self.capture.dropped_samples.load(Ordering::Relaxed)
        ));
        out.push_str("# HELP hearken_engine_restarts_total Engine restarts after a crash or hang.\n");
        out.push_str("# TYPE hearken_engine_restarts_total counter\n");
        for (engine, restarts) in self.restarts.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.push_str(&format!("hearken_engine_restarts_total{{engine=\"{engine}\"}} {restarts}\n"));
        }
        let host = self.host();
        for (name, help, value) in [
            ("cpu_load_ratio", "One-minute load average per core.", host.cpu_load),
            ("memory_used_ratio", "Share of memory not available.", host.memory_used),
            ("gpu_memory_used_ratio", "Share of GPU memory in use (fullest GPU).", host.gpu_memory_used),
        ] {
            if let Some(value) = value {
                out.push_str(&format!("# HELP hearken_host_{name} {help}\n# TYPE hearken_host_{name} gauge\n"));
                out.push_str(&format!("hearken_host_{name} {value}\n"));
            }
        }
        out
    }
}

/// A counter's label name (when it has one) and help text.
fn describe(counter: &str) -> (&'static str, &'static str) {
    match counter {
        "utterances" => ("outcome", "Utterances by what became of them."),
        "commands" => ("outcome", "Commands by outcome."),
        "confirmations" => ("decision", "Confirmation decisions."),
        "stt_retries" => ("outcome", "Utterances heard again (primed), by whether a further reading was used."),
        "routes" => ("reason", "Routing decisions by stage, place (local, online) and reason."),
        "online_attempts" => ("outcome", "Online API tries by stage, endpoint and outcome (sent or skipped)."),
        "late_acks" => (
            "device",
            "Acknowledgements that came after their command's budget, by device (the outcome stays as it was).",
        ),
        _ => ("kind", "Events."),
    }
}

/// Serves `/metrics` on `listener` until the runtime stops.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
        }),
    );
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let metrics = Metrics::default();
        metrics.observe("stt", Duration::from_millis(120));
        metrics.observe("stt", Duration::from_millis(30));
        metrics.count("commands", "acknowledged");
        metrics.count("commands", "acknowledged");
        metrics.count("commands", "timeout");
        let text = metrics.render();
        assert!(text.contains("hearken_stage_latency_seconds_bucket{stage=\"stt\",le=\"0.05\"} 1\n"), "{text}");
        assert!(text.contains("hearken_stage_latency_seconds_bucket{stage=\"stt\",le=\"0.15\"} 2\n"), "{text}");
        assert!(text.contains("hearken_stage_latency_seconds_count{stage=\"stt\"} 2\n"), "{text}");
        assert!(text.contains("hearken_commands_total{outcome=\"acknowledged\"} 2\n"), "{text}");
        assert!(text.contains("hearken_commands_total{outcome=\"timeout\"} 1\n"), "{text}");
        assert_eq!(text.matches("# TYPE hearken_commands_total counter").count(), 1);
    }

    #[test]
    fn counters_with_several_labels_render_them_all() {
        let metrics = Metrics::default();
        metrics.count_with("routes", &[("stage", "stt"), ("where", "online"), ("reason", "over_budget")]);
        metrics.count_with("routes", &[("stage", "stt"), ("where", "online"), ("reason", "over_budget")]);
        let text = metrics.render();
        assert!(
            text.contains("hearken_routes_total{stage=\"stt\",where=\"online\",reason=\"over_budget\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE hearken_routes_total counter"), "{text}");
    }

    #[test]
    fn host_gauges_appear_only_for_signals_that_were_read() {
        let metrics = Metrics::default();
        metrics.set_host(crate::host::Pressure { cpu_load: Some(0.5), memory_used: Some(0.25), gpu_memory_used: None });
        let text = metrics.render();
        assert!(text.contains("hearken_host_cpu_load_ratio 0.5\n"), "{text}");
        assert!(text.contains("hearken_host_memory_used_ratio 0.25\n"), "{text}");
        assert!(!text.contains("gpu_memory"), "{text}");
    }
}
