//! Benchmarks behind `hearken bench`. They report medians, tails and counts
//! as one JSON object; they never assert on time (that is for people reading
//! the numbers, on a machine they know).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use hearken::catalog::{Catalog, CatalogError, Command};

use crate::simulator::{Simulator, SimulatorConfig, SimulatorError};
use crate::testbed::{Mosquitto, TestbedError};
use hearken::mqtt::{BrokerOptions, CommandLink, LinkStats, MqttError, Outcome};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The broker could not be started.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    /// The catalog is unusable.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The link could not connect.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The simulator could not start.
    #[error(transparent)]
    Simulator(#[from] SimulatorError),
    /// The simulator did not subscribe in time.
    #[error("the device simulator did not subscribe within 5 s")]
    SimulatorNotReady,
}

/// Settings of `hearken bench mqtt`.
#[derive(Debug, Clone)]
pub struct MqttBenchOptions {
    /// Broker to use; `None` starts a private Mosquitto on a free port.
    pub broker: Option<String>,
    /// Catalog to command; `None` uses a generated one of hearken-protocol devices.
    pub catalog: Option<std::path::PathBuf>,
    /// Commands in the concurrent phase.
    pub commands: usize,
    /// Commands in flight at once in the concurrent phase.
    pub in_flight: usize,
    /// Commands sent one at a time in the sequential phase.
    pub sequential: usize,
    /// Offered load of the paced phase, in commands per second.
    pub rate: f64,
    /// Commands in the paced phase.
    pub paced: usize,
}

/// Latency percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Acknowledged commands measured.
    pub count: usize,
    /// Median publish → acknowledgement.
    pub median_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The report of `hearken bench mqtt`.
#[derive(Debug, Clone, Serialize)]
pub struct MqttBenchReport {
    /// Always `"mqtt"`.
    pub bench: &'static str,
    /// The broker used.
    pub broker: String,
    /// One command at a time: the latency a single utterance sees.
    pub sequential: Latencies,
    /// `in_flight` commands at once, as fast as they are acknowledged
    /// (closed loop: latency here is queueing, `in_flight / throughput`).
    pub concurrent: Latencies,
    /// Commands started at a steady `rate` (open loop, at most `in_flight`
    /// outstanding), measured from their start including any wait for a free
    /// slot: the latency at that load.
    pub paced: Latencies,
    /// Offered load of the paced phase.
    pub paced_rate_per_sec: f64,
    /// Commands in flight in the concurrent phase.
    pub in_flight: usize,
    /// Acknowledged commands per second in the concurrent phase.
    pub acknowledged_per_sec: f64,
    /// Commands sent (both phases).
    pub sent: u64,
    /// Commands acknowledged (both phases).
    pub acknowledged: u64,
    /// Commands with any other outcome.
    pub not_acknowledged: u64,
    /// Acknowledgements that matched an already acknowledged command.
    pub duplicate_acks: u64,
    /// Commands the devices received more than once.
    pub duplicate_commands: u64,
}

/// A catalog of hearken-protocol devices with generous budgets, so the
/// benchmark measures latency rather than counting timeouts.
fn bench_catalog() -> Result<Catalog, CatalogError> {
    let mut text = String::from("site = \"bench\"\nbudget_ms = 5000\n");
    for i in 0..16 {
        text.push_str(&format!(
            "[[devices]]\nid = \"bench_{i:02}\"\nname = \"bench device {i}\"\nactions = [\"turn_on\", \"turn_off\", \"set_level\"]\n[devices.params.set_level]\nmin = 0\nmax = 100\n"
        ));
    }
    Catalog::parse(Path::new("<bench>"), &text)
}

/// The i-th benchmark command: cycles through devices and actions.
fn nth_command(catalog: &Catalog, i: usize) -> Command {
    let device = &catalog.devices[i % catalog.devices.len()];
    let action = &device.actions[(i / catalog.devices.len()) % device.actions.len()];
    let value = device.param(action).map(|r| r.min + (i as i64 % (r.max - r.min + 1)));
    Command { device: device.id.clone(), action: action.clone(), value }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    hearken::millis(sorted[rank.min(sorted.len() - 1)])
}

fn summarize(mut samples: Vec<Duration>) -> Latencies {
    samples.sort();
    Latencies {
        count: samples.len(),
        median_ms: percentile(&samples, 0.5),
        p95_ms: percentile(&samples, 0.95),
        p99_ms: percentile(&samples, 0.99),
        max_ms: samples.last().map_or(0.0, |d| hearken::millis(*d)),
    }
}

/// Sends commands through a real broker to the simulator (zero latency) and
/// reports publish → acknowledgement latency and throughput.
pub async fn mqtt(options: &MqttBenchOptions) -> Result<MqttBenchReport, BenchError> {
    let (_broker, url) = match &options.broker {
        Some(url) => (None, url.clone()),
        // Mosquitto as Debian ships it: what a new user's broker does.
        None => {
            let broker = Mosquitto::start_stock()?;
            let url = broker.url();
            (Some(broker), url)
        }
    };
    let catalog = Arc::new(match &options.catalog {
        Some(path) => Catalog::load(path)?,
        None => bench_catalog()?,
    });
    let broker = BrokerOptions::new(url.clone());
    let simulator = Simulator::start(&broker, catalog.clone(), SimulatorConfig::default())?;
    if !simulator.wait_ready(1, Duration::from_secs(5)).await {
        return Err(BenchError::SimulatorNotReady);
    }
    let link = CommandLink::start(&broker, catalog.clone())?;
    link.wait_connected(Duration::from_secs(5)).await?;

    let mut not_acknowledged = 0u64;
    let mut sequential = Vec::with_capacity(options.sequential);
    for i in 0..options.sequential {
        let command = nth_command(&catalog, i);
        match link.send(&command).await {
            Ok(d) if d.outcome == Outcome::Acknowledged => sequential.push(d.latency),
            _ => not_acknowledged += 1,
        }
    }

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let per_worker = options.commands.div_ceil(options.in_flight.max(1));
    for worker in 0..options.in_flight.max(1) {
        let link = link.clone();
        let catalog = catalog.clone();
        let first = worker * per_worker;
        let last = ((worker + 1) * per_worker).min(options.commands);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(last.saturating_sub(first));
            let mut failed = 0u64;
            for i in first..last {
                match link.send(&nth_command(&catalog, i)).await {
                    Ok(d) if d.outcome == Outcome::Acknowledged => latencies.push(d.latency),
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let mut concurrent = Vec::with_capacity(options.commands);
    while let Some(joined) = tasks.join_next().await {
        if let Ok((latencies, failed)) = joined {
            concurrent.extend(latencies);
            not_acknowledged += failed;
        }
    }
    let elapsed = started.elapsed();

    let (paced, paced_failed) = paced_phase(&link, &catalog, options).await;
    not_acknowledged += paced_failed;
    // Let stray duplicates, if any, arrive before counting them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged_per_sec = concurrent.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let stats = link.stats();
    let report = MqttBenchReport {
        bench: "mqtt",
        broker: url,
        sequential: summarize(sequential),
        concurrent: summarize(concurrent),
        paced: summarize(paced),
        paced_rate_per_sec: options.rate,
        in_flight: options.in_flight,
        acknowledged_per_sec: (acknowledged_per_sec * 10.0).round() / 10.0,
        sent: LinkStats::get(&stats.published),
        acknowledged: LinkStats::get(&stats.acknowledged),
        not_acknowledged,
        duplicate_acks: LinkStats::get(&stats.duplicate_acks),
        duplicate_commands: LinkStats::get(&simulator.stats().duplicate_commands),
    };
    link.shutdown().await;
    simulator.stop().await;
    Ok(report)
}

/// Starts commands at a steady rate with at most `in_flight` outstanding and
/// measures each from its scheduled start, so a backlog shows up as latency.
async fn paced_phase(link: &CommandLink, catalog: &Arc<Catalog>, options: &MqttBenchOptions) -> (Vec<Duration>, u64) {
    if options.paced == 0 || options.rate <= 0.0 {
        return (Vec::new(), 0);
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(options.in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..options.paced {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        // Measured from the wake-up, not `scheduled`: the timer's millisecond
        // granularity is the benchmark's artefact; waiting for a permit (a
        // backlog) is counted.
        let began = tokio::time::Instant::now();
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let link = link.clone();
        let command = nth_command(catalog, i);
        tasks.spawn(async move {
            let result = link.send(&command).await;
            drop(permit);
            match result {
                Ok(d) if d.outcome == Outcome::Acknowledged => Some(began.elapsed()),
                _ => None,
            }
        });
    }
    let mut latencies = Vec::with_capacity(options.paced);
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Some(latency)) => latencies.push(latency),
            _ => failed += 1,
        }
    }
    (latencies, failed)
}

/// Commands spoken for `hearken bench stt`: two to four seconds each, with
/// the device names, numbers and verbs of the example catalogs.
pub const STT_COMMANDS: [&str; 20] = [
    "turn on the kitchen light",
    "turn off the living room lamp",
    "set the thermostat to twenty one degrees",
    "stop conveyor two",
    "start pump three",
    "open the garage door",
    "lock the front door",
    "turn on the porch light and the ceiling fan",
    "close the living room blinds",
    "turn off the hall lights",
    "start the air compressor",
    "turn on the coffee machine",
    "pause the kitchen speaker",
    "turn off the tv",
    "close the fire door",
    "set the kiln to nine hundred degrees",
    "turn off the bedroom light",
    "turn on the exhaust fan",
    "set the ceiling fan speed to two",
    "dim the kitchen light to fifty percent",
];

/// Settings of `hearken bench stt`.
#[derive(Debug, Clone)]
pub struct SttBenchOptions {
    /// ggml model for hearken-whisper.
    pub model: std::path::PathBuf,
    /// CTranslate2 directory of the same weights, for faster-whisper (`None` skips it).
    pub ct2_dir: Option<std::path::PathBuf>,
    /// Python with faster-whisper installed (`None` skips it).
    pub python: Option<std::path::PathBuf>,
    /// Threads for both engines.
    pub threads: usize,
    /// Transcriptions per clip (the first is a warm-up and not counted).
    pub runs: usize,
}

/// One engine's result in `hearken bench stt`.
#[derive(Debug, Clone, Serialize)]
pub struct SttEngineReport {
    /// Median transcription latency.
    pub median_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Word error rate over all clips (normalized words).
    pub wer: f64,
    /// Transcripts of the last run, for inspection.
    pub transcripts: Vec<String>,
}

/// The report of `hearken bench stt`.
#[derive(Debug, Clone, Serialize)]
pub struct SttBenchReport {
    /// Always `"stt"`.
    pub bench: &'static str,
    /// Clips transcribed.
    pub clips: usize,
    /// Threads per engine.
    pub threads: usize,
    /// hearken-whisper (whisper.cpp, clip-sized audio_ctx).
    pub hearken: SttEngineReport,
    /// faster-whisper (CTranslate2 int8, beam 1), when run.
    pub faster_whisper: Option<SttEngineReport>,
    /// hearken median / faster-whisper median.
    pub median_ratio: Option<f64>,
    /// hearken-whisper's resident memory after the run.
    pub engine_rss_mb: Option<f64>,
    /// hearken-whisper's CPU use while idle for 2 s after the run.
    pub engine_idle_cpu_percent: Option<f64>,
}

/// Lowercase words without punctuation, number words as digits.
pub fn normalize_words(text: &str) -> Vec<String> {
    let lowered: String =
        text.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c == '%' { c } else { ' ' }).collect();
    let units = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    let words: Vec<&str> = lowered.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if let Some(t) = tens.iter().position(|x| !x.is_empty() && *x == w) {
            let unit = words.get(i + 1).and_then(|n| units.iter().position(|u| u == n)).filter(|u| *u > 0);
            out.push((t * 10 + unit.unwrap_or(0)).to_string());
            i += if unit.is_some() { 2 } else { 1 };
            continue;
        }
        if w == "hundred" {
            if let Some(n) = out.last_mut().and_then(|last| last.parse::<u32>().ok().map(|v| (last, v))) {
                *n.0 = (n.1 * 100).to_string();
                i += 1;
                continue;
            }
        }
        match units.iter().position(|u| *u == w) {
            Some(u) => out.push(u.to_string()),
            None if w.ends_with('%') => {
                out.push(w.trim_end_matches('%').to_owned());
                out.push("percent".to_owned());
            }
            None => out.push(w.to_owned()),
        }
        i += 1;
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Word-level edit distance.
fn word_errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous + usize::from(r != h);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[hypothesis.len()]
}

/// Word error rate of `hypotheses` against `references` (both normalized).
pub fn word_error_rate(references: &[&str], hypotheses: &[String]) -> f64 {
    let (mut errors, mut words) = (0, 0);
    for (r, h) in references.iter().zip(hypotheses) {
        let r = normalize_words(r);
        errors += word_errors(&r, &normalize_words(h));
        words += r.len();
    }
    errors as f64 / words.max(1) as f64
}

const FASTER_WHISPER_SCRIPT: &str = r#"
import json, sys, time
from faster_whisper import WhisperModel
model_dir, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
for path in sys.argv[4:]:
    times, text = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        segments, _ = model.transcribe(path, beam_size=1, language="en", vad_filter=False,
                                       condition_on_previous_text=False, without_timestamps=True)
        text = "".join(s.text for s in segments).strip()
        times.append((time.perf_counter() - start) * 1000.0)
    print(json.dumps({"file": path, "text": text, "ms": times[1:] if runs > 1 else times}), flush=True)
"#;

/// Errors of `hearken bench stt` beyond those of the stages it drives.
#[derive(Debug, thiserror::Error)]
pub enum SttBenchError {
    /// A tool (espeak-ng, sox, python) failed.
    #[error("{tool}: {reason}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened.
        reason: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Stt(#[from] hearken::stt::SttError),
    /// A clip could not be read.
    #[error(transparent)]
    Audio(#[from] hearken::audio::AudioError),
}

fn run_tool(program: &str, args: &[&str]) -> Result<std::process::Output, SttBenchError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SttBenchError::Tool { tool: program.to_owned(), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(SttBenchError::Tool {
            tool: program.to_owned(),
            reason: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

fn proc_stat_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Synthesizes [`STT_COMMANDS`] (espeak-ng + sox), transcribes them with
/// hearken-whisper and, when given, faster-whisper on the same weights, and
/// reports latency, word error rate and the engine's memory and idle CPU.
pub async fn stt(options: &SttBenchOptions) -> Result<SttBenchReport, SttBenchError> {
    let dir = std::env::temp_dir().join(format!("hearken-bench-stt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| SttBenchError::Tool { tool: "mkdir".into(), reason: e.to_string() })?;
    let mut clips = Vec::new();
    for (i, text) in STT_COMMANDS.iter().enumerate() {
        let raw = dir.join(format!("{i:02}.raw.wav"));
        let clip = dir.join(format!("{i:02}.wav"));
        run_tool("espeak-ng", &["-v", "en", "-s", "175", "-w", &raw.to_string_lossy(), text])?;
        run_tool("sox", &[&raw.to_string_lossy(), "-r", "16000", "-c", "1", "-b", "16", &clip.to_string_lossy()])?;
        clips.push(clip);
    }

    let engine = hearken::local::WhisperProcess::start(&options.model, options.threads).await?;
    let client = engine.client(Duration::from_secs(60))?;
    let mut latencies = Vec::new();
    let mut transcripts = Vec::new();
    for clip in &clips {
        let samples = hearken::audio::read_wav(clip)?.samples;
        let mut text = String::new();
        for run in 0..options.runs.max(2) {
            let result = client.transcribe(&samples, hearken::stt::Priming::NONE).await?;
            if run > 0 {
                latencies.push(result.latency);
            }
            text = result.text;
        }
        transcripts.push(text);
    }
    let pid = engine.pid();
    let engine_rss_mb = pid.and_then(proc_rss_mb);
    let engine_idle_cpu_percent = match pid.and_then(proc_stat_ticks) {
        Some(before) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            pid.and_then(proc_stat_ticks).map(|after| (after - before) as f64 / 2.0)
        }
        None => None,
    };
    drop(engine);
    let summary = summarize(latencies);
    let hearken = SttEngineReport {
        median_ms: summary.median_ms,
        p95_ms: summary.p95_ms,
        wer: word_error_rate(&STT_COMMANDS, &transcripts),
        transcripts,
    };

    let faster_whisper = match (&options.python, &options.ct2_dir) {
        (Some(python), Some(ct2_dir)) => {
            let script = dir.join("faster_whisper_bench.py");
            std::fs::write(&script, FASTER_WHISPER_SCRIPT)
                .map_err(|e| SttBenchError::Tool { tool: "write".into(), reason: e.to_string() })?;
            let mut args = vec![
                script.to_string_lossy().into_owned(),
                ct2_dir.to_string_lossy().into_owned(),
                options.threads.to_string(),
                options.runs.max(2).to_string(),
            ];
            args.extend(clips.iter().map(|c| c.to_string_lossy().into_owned()));
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run_tool(&python.to_string_lossy(), &arg_refs)?;
            let mut latencies = Vec::new();
            let mut transcripts = Vec::new();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let value: serde_json::Value = serde_json::from_str(line).map_err(|e| SttBenchError::Tool {
                    tool: "faster-whisper".into(),
                    reason: format!("{e}: {line}"),
                })?;
                for ms in value["ms"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_f64) {
                    latencies.push(Duration::from_secs_f64(ms / 1000.0));
                }
                transcripts.push(value["text"].as_str().unwrap_or_default().to_owned());
            }
            let summary = summarize(latencies);
            Some(SttEngineReport {
                median_ms: summary.median_ms,
                p95_ms: summary.p95_ms,
                wer: word_error_rate(&STT_COMMANDS, &transcripts),
                transcripts,
            })
        }
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let median_ratio = faster_whisper
        .as_ref()
        .filter(|fw| fw.median_ms > 0.0)
        .map(|fw| (hearken.median_ms / fw.median_ms * 1000.0).round() / 1000.0);
    Ok(SttBenchReport {
        bench: "stt",
        clips: clips.len(),
        threads: options.threads,
        hearken,
        faster_whisper,
        median_ratio,
        engine_rss_mb,
        engine_idle_cpu_percent,
    })
}

/// The report of `hearken bench vad`.
#[derive(Debug, Clone, Serialize)]
pub struct VadBenchReport {
    /// Always `"vad"`.
    pub bench: &'static str,
    /// Seconds of audio segmented per run.
    pub audio_secs: f64,
    /// Median wall time per run.
    pub median_ms: f64,
    /// Audio seconds per wall second, on one core.
    pub realtime_factor: f64,
    /// Segments found per run.
    pub segments: usize,
}

/// Segments a minute of voice-like audio with pauses, `runs` times on one
/// thread, and reports how many times faster than real time that is.
pub fn vad(runs: usize) -> Result<VadBenchReport, hearken::audio::vad::VadError> {
    let rate = hearken::audio::SAMPLE_RATE as usize;
    let mut audio = Vec::with_capacity(60 * rate);
    while audio.len() < 60 * rate {
        let start = audio.len();
        audio.extend((0..2 * rate).map(|i| {
            let t = (start + i) as f32 / rate as f32;
            let voice: f32 = (1..=10).map(|h| ((h as f32) * 130.0 * std::f32::consts::TAU * t).sin() / h as f32).sum();
            0.2 * voice * (0.6 + 0.4 * (t * 25.0).sin().abs())
        }));
        audio.extend(std::iter::repeat_n(0.0, rate));
    }
    let mut times = Vec::new();
    let mut segments = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        segments = hearken::audio::vad::segment_all(&audio, hearken::audio::vad::VadConfig::default())?.len();
        times.push(started.elapsed());
    }
    let summary = summarize(times);
    let audio_secs = audio.len() as f64 / rate as f64;
    Ok(VadBenchReport {
        bench: "vad",
        audio_secs,
        median_ms: summary.median_ms,
        realtime_factor: (audio_secs * 1000.0 / summary.median_ms.max(1e-9)).round(),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_and_word_error_rate() {
        assert_eq!(normalize_words("Set the kiln to nine hundred degrees!").join(" "), "set the kiln to 900 degrees");
        assert_eq!(normalize_words("Dim it to 50%, twenty one").join(" "), "dim it to 50 percent 21");
        assert_eq!(word_error_rate(&["turn on the light"], &["Turn on the light.".to_owned()]), 0.0);
        assert_eq!(word_error_rate(&["turn on the light"], &["turn of the night light".to_owned()]), 0.5);
    }
}
