//! `hearken demo` and `hearken bench e2e`: the daemon end to end on a
//! recording, against a private Mosquitto and the simulated devices.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::eval::percentile;
use crate::simulator::{Simulator, SimulatorConfig};
use crate::speech::{say, Utterance, ROOM, VOICES};
use crate::testbed::{CpuBurners, Mosquitto};
use hearken::catalog::Catalog;
use hearken::catalog::Command;
use hearken::config::{AudioSource, Config};
use hearken::mqtt::BrokerOptions;

/// Arguments of `hearken demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Device catalog whose devices are simulated.
    #[arg(long, default_value = "devices/home.toml")]
    catalog: PathBuf,
    /// Recording of spoken commands (WAV).
    #[arg(long, default_value = "devices/recordings/home-demo.wav")]
    recording: PathBuf,
    /// Broker to use; by default a private Mosquitto is started on a free loopback port.
    #[arg(long)]
    broker: Option<String>,
    /// Where the audit log goes (default: a fresh temporary directory).
    #[arg(long)]
    audit: Option<PathBuf>,
}

/// Arguments of `hearken bench e2e`.
#[derive(Args)]
pub struct BenchE2eArgs {
    /// Synthesized sets (JSON lines: text, commands) for one catalog.
    #[arg(long = "set", default_values = ["tests/data/e2e_home.jsonl"])]
    sets: Vec<PathBuf>,
    /// The catalog the sets are written for.
    #[arg(long, default_value = "devices/home.toml")]
    catalog: PathBuf,
    /// Silence between utterances in the synthesized stream.
    #[arg(long, default_value_t = 2_500)]
    gap_ms: u64,
    /// Print every utterance, not only the wrong ones.
    #[arg(long)]
    all_cases: bool,
    /// Also run each set with this many CPU burners beside it (processes that spin,
    /// stopped after the run and after 15 minutes at most) and report quiet and busy
    /// side by side.
    #[arg(long, default_value_t = 0)]
    busy_cores: usize,
    /// Engines always use all their threads (`adaptive_threads = false`), to measure
    /// what adapting to the idle cores saves.
    #[arg(long)]
    fixed_threads: bool,
    /// Voices to speak each set in, one run per voice: `espeak` (espeak-ng as the
    /// first benchmarks had it), `kokoro:<style>`, `piper:joe`, `espeak:<voice>`;
    /// `natural` is the natural set's six (four Kokoro styles, Piper's joe, espeak-ng).
    /// Natural voices come from `scripts/speech/fetch.sh` (cached outside the clone).
    #[arg(long = "voice", default_values = ["espeak"])]
    voices: Vec<String>,
    /// Also play every voice in a real room (`Concrete Room`) with pink noise this
    /// many dB below the speech.
    #[arg(long)]
    room_snr_db: Option<f64>,
}

/// A broker, the simulated devices, and what the daemon reported.
pub(crate) struct Stage {
    _broker: Option<Mosquitto>,
    broker_url: String,
    pub(crate) simulator: Simulator,
}

impl Stage {
    /// A private broker (unless `broker` is given) and the simulated devices of `catalog`.
    pub(crate) async fn start(catalog: &Path, broker: Option<String>) -> anyhow::Result<Stage> {
        let (own, broker_url) = match broker {
            Some(url) => (None, url),
            None => {
                let broker = Mosquitto::start().context("cannot start a private Mosquitto (run scripts/setup.sh)")?;
                let url = broker.url();
                (Some(broker), url)
            }
        };
        let catalog = Arc::new(Catalog::load(catalog)?);
        let simulator = Simulator::start(&BrokerOptions::new(&broker_url), catalog, SimulatorConfig::default())?;
        if !simulator.wait_ready(1, Duration::from_secs(10)).await {
            bail!("the simulated devices could not subscribe on {broker_url}");
        }
        Ok(Stage { _broker: own, broker_url, simulator })
    }

    /// Runs the daemon over `recording` (paced at real time) and returns its report lines.
    async fn run(&self, catalog: &Path, recording: &Path, audit: &Path, show: bool) -> anyhow::Result<Vec<Value>> {
        self.run_with(catalog, recording, audit, show, |_| ()).await
    }

    /// Like `run`, with the daemon's configuration adjusted by `adjust` last.
    pub(crate) async fn run_with(
        &self,
        catalog: &Path,
        recording: &Path,
        audit: &Path,
        show: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Vec<Value>> {
        let mut config =
            Config::parse(Path::new("(demo)"), &format!("catalog = {:?}\n", catalog.display().to_string()))?;
        config.broker.url = self.broker_url.clone();
        config.audio.source = AudioSource::File;
        config.audio.file = Some(recording.to_owned());
        config.audio.realtime = true;
        config.audit.path = audit.to_owned();
        config.engines.startup_timeout_ms = 120_000;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.stt.threads = threads;
        config.intent.threads = threads;
        adjust(&mut config);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(64);
        let collector = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                if show {
                    println!("{line}");
                    describe(&line);
                }
                lines.push(line);
            }
            lines
        });
        hearken::daemon::run(config, tx, std::future::pending()).await?;
        Ok(collector.await?)
    }
}

/// A readable line on stderr for each report.
fn describe(line: &Value) {
    if line["daemon"] == "ready" {
        eprintln!("daemon ready (engines healthy, broker connected: {})", line["broker_connected"]);
        return;
    }
    let latency = &line["latency_ms"];
    if let Some(text) = line["text"].as_str() {
        eprintln!(
            "heard {:?}  [stt {} ms, intent {} ms]",
            text,
            latency["stt"].as_f64().map_or("-".into(), |v| format!("{v:.0}")),
            latency["nlu"].as_f64().map_or("-".into(), |v| format!("{v:.0}"))
        );
    }
    if let Some(confirmation) = line["confirmation"].as_u64() {
        if let Some(decision) = line["decision"].as_str() {
            eprintln!("  confirmation {confirmation}: {decision} by {}", line["by"]);
        } else {
            eprintln!("  waiting for confirmation {confirmation}: {}", line["needs_confirmation"]);
        }
    }
    for command in line["commands"].as_array().into_iter().flatten() {
        eprintln!(
            "  → {} {} {}: {} in {} ms (state {})",
            command["device"].as_str().unwrap_or("?"),
            command["action"].as_str().unwrap_or("?"),
            command["value"],
            command["outcome"].as_str().unwrap_or("?"),
            command["latency_ms"],
            command["state"]
        );
    }
    match (latency["end_to_ack"].as_f64(), latency["trailing_silence"].as_u64()) {
        (Some(end_to_ack), Some(silence)) => {
            eprintln!("  end of speech → acknowledgement {end_to_ack:.0} ms (+ {silence} ms trailing silence)")
        }
        (Some(end_to_ack), None) => eprintln!("  answer → acknowledgement {end_to_ack:.0} ms"),
        _ => {}
    }
}

/// Runs the demo; exits 0 when the audit log verifies.
pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if !args.recording.exists() {
        bail!("no recording at {} (run from the repository root or pass --recording)", args.recording.display());
    }
    let stage = Stage::start(&args.catalog, args.broker).await?;
    let scratch = tempfile::tempdir()?;
    let audit = args.audit.unwrap_or_else(|| scratch.path().join("audit.log"));
    eprintln!("hearken demo: {} → daemon → simulated devices of {}", args.recording.display(), args.catalog.display());
    stage.run(&args.catalog, &args.recording, &audit, true).await?;
    stage.simulator.stop().await;
    let verified = hearken::audit::verify(&audit)?;
    let line = json!({"audit": audit, "ok": true, "records": verified.records, "head": verified.head});
    println!("{line}");
    eprintln!("audit log {}: {} records, hash chain intact", audit.display(), verified.records);
    Ok(ExitCode::SUCCESS)
}

/// One expected utterance of a synthesized set.
#[derive(serde::Deserialize)]
pub(crate) struct E2eCase {
    /// What is said.
    pub(crate) text: String,
    /// The commands it should give.
    pub(crate) commands: Vec<Command>,
    /// Sets that span catalogs (the intent dev set) say which one a case is for.
    catalog: Option<PathBuf>,
}

/// Synthesizes each set into one stream, runs the daemon over it and reports
/// per-stage latency and the share of utterances whose acknowledged commands
/// are exactly the expected ones.
pub async fn bench_e2e(args: BenchE2eArgs) -> anyhow::Result<ExitCode> {
    let stage = Stage::start(&args.catalog, None).await?;
    let fixed = args.fixed_threads;
    let voices: Vec<String> = args
        .voices
        .iter()
        .flat_map(|v| if v == "natural" { VOICES.map(String::from).to_vec() } else { vec![v.clone()] })
        .collect();
    let mut variants: Vec<(String, Option<f64>)> = voices.iter().map(|v| (v.clone(), None)).collect();
    if let Some(snr) = args.room_snr_db {
        variants.extend(voices.iter().map(|v| (v.clone(), Some(snr))));
    }
    for (set, (voice, snr)) in args.sets.iter().flat_map(|s| variants.iter().map(move |v| (s, v))) {
        let (cases, skipped) = load_cases(set, &args.catalog)?;
        let scratch = tempfile::tempdir()?;
        let (recording, spans) = if voice == "espeak" && snr.is_none() {
            synthesize(&cases, scratch.path(), args.gap_ms)?
        } else {
            let utterances: Vec<Utterance> = cases
                .iter()
                .map(|c| {
                    let dry = Utterance::new(&c.text, voice);
                    match snr {
                        Some(snr) => dry.in_room(ROOM, *snr),
                        None => dry,
                    }
                })
                .collect();
            stream_of(&say(&utterances)?, scratch.path(), args.gap_ms)?
        };
        let adjust = move |config: &mut Config| {
            config.stt.adaptive_threads = !fixed;
            config.intent.adaptive_threads = !fixed;
        };
        let quiet_audit = scratch.path().join("audit.log");
        let quiet_lines = stage.run_with(&args.catalog, &recording, &quiet_audit, false, adjust).await?;
        let quiet = score(&cases, &spans, &quiet_lines, args.all_cases);
        let mut report = if args.busy_cores == 0 {
            quiet
        } else {
            let burners = CpuBurners::start(args.busy_cores).context("cannot start a CPU burner (timeout, sh)")?;
            let busy_audit = scratch.path().join("audit-busy.log");
            let busy_lines = stage.run_with(&args.catalog, &recording, &busy_audit, false, adjust).await?;
            let busy = score(&cases, &spans, &busy_lines, args.all_cases);
            drop(burners);
            let median = |r: &Value| r["latency"]["end_to_ack"]["median_ms"].as_f64();
            let ratio = median(&busy).zip(median(&quiet)).map(|(b, q)| b / q.max(f64::EPSILON));
            json!({"quiet": quiet, "busy": busy, "busy_cores": args.busy_cores,
                   "end_to_ack_median_busy_over_quiet": ratio})
        };
        report["set"] = json!(set);
        report["voice"] = json!(voice);
        report["room_snr_db"] = json!(snr);
        report["skipped"] = json!(skipped);
        report["adaptive_threads"] = json!(!fixed);
        println!("{report}");
    }
    stage.simulator.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// The cases of `set` for `catalog`, leaving out those that wait for a
/// confirmation nobody gives; and how many were left out.
pub(crate) fn load_cases(set: &Path, catalog_path: &Path) -> anyhow::Result<(Vec<E2eCase>, usize)> {
    let text = std::fs::read_to_string(set).with_context(|| format!("cannot read {}", set.display()))?;
    let all: Vec<E2eCase> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not JSON lines of {{text, commands}}", set.display()))?;
    let catalog = Catalog::load(catalog_path)?;
    let needs_confirmation = |c: &Command| catalog.device(&c.device).is_some_and(|d| d.confirm.contains(&c.action));
    let total = all.len();
    let cases: Vec<E2eCase> = all
        .into_iter()
        .filter(|case| case.catalog.as_ref().is_none_or(|c| c == catalog_path))
        .filter(|case| !case.commands.iter().any(needs_confirmation))
        .collect();
    let skipped = total - cases.len();
    Ok((cases, skipped))
}

/// Clips joined into one 16 kHz stream with `gap_ms` of silence between;
/// returns the stream and each clip's span in milliseconds.
pub(crate) fn stream_of(clips: &[PathBuf], dir: &Path, gap_ms: u64) -> anyhow::Result<(PathBuf, Vec<(u64, u64)>)> {
    let mut stream: Vec<f32> = vec![0.0; 16 * 500];
    let mut spans = Vec::new();
    for clip in clips {
        let speech = hearken::audio::read_wav(clip)?;
        let start = stream.len() as u64 / 16;
        stream.extend_from_slice(&speech.samples);
        spans.push((start, stream.len() as u64 / 16));
        stream.extend(std::iter::repeat_n(0.0, (gap_ms * 16) as usize));
    }
    let path = dir.join("stream.wav");
    std::fs::write(&path, hearken::audio::encode_wav16k(&stream))?;
    Ok((path, spans))
}

/// Speaks every case with espeak-ng into one 16 kHz stream with `gap_ms` of
/// silence between; returns the stream and each case's span in milliseconds.
pub(crate) fn synthesize(cases: &[E2eCase], dir: &Path, gap_ms: u64) -> anyhow::Result<(PathBuf, Vec<(u64, u64)>)> {
    let mut clips = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let wav = dir.join(format!("{i}.wav"));
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "en", "-s", "175", "-w"])
            .arg(&wav)
            .arg(&case.text)
            .status()
            .context("cannot run espeak-ng (run scripts/setup.sh)")?;
        if !status.success() {
            bail!("espeak-ng failed on {:?}", case.text);
        }
        clips.push(wav);
    }
    stream_of(&clips, dir, gap_ms)
}

fn score(cases: &[E2eCase], spans: &[(u64, u64)], lines: &[Value], all_cases: bool) -> Value {
    let utterances: Vec<&Value> = lines.iter().filter(|l| l["utterance"].is_u64() && l["start_ms"].is_u64()).collect();
    let mut correct = 0;
    let mut results = Vec::new();
    for (case, (start, end)) in cases.iter().zip(spans) {
        // Every utterance the VAD cut inside this case's span (normally one).
        let heard: Vec<&&Value> = utterances
            .iter()
            .filter(|u| u["start_ms"].as_u64().is_some_and(|s| s + 300 >= *start && s <= *end))
            .collect();
        let acknowledged: Vec<Command> = heard
            .iter()
            .flat_map(|u| u["commands"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["outcome"] == "acknowledged")
            .filter_map(|c| {
                serde_json::from_value(json!({"device": c["device"], "action": c["action"], "value": c["value"]})).ok()
            })
            .collect();
        let ok = acknowledged.len() == case.commands.len() && case.commands.iter().all(|c| acknowledged.contains(c));
        correct += usize::from(ok);
        if all_cases || !ok {
            results
                .push(json!({"text": case.text, "heard": heard.iter().map(|u| u["text"].clone()).collect::<Vec<_>>(),
                                "expected": case.commands, "acknowledged": acknowledged, "ok": ok}));
        }
    }
    let stage = |name: &str| {
        let mut samples: Vec<f64> = utterances.iter().filter_map(|u| u["latency_ms"][name].as_f64()).collect();
        samples.sort_by(f64::total_cmp);
        json!({"n": samples.len(), "median_ms": percentile(&samples, 0.5), "p95_ms": percentile(&samples, 0.95)})
    };
    json!({
        "utterances": cases.len(),
        "heard": utterances.len(),
        "exact": correct,
        "accuracy": correct as f64 / cases.len().max(1) as f64,
        "trailing_silence_ms": utterances.first().map(|u| u["latency_ms"]["trailing_silence"].clone()),
        "latency": {"queue": stage("queue"), "stt": stage("stt"), "nlu": stage("nlu"), "mqtt": stage("mqtt"),
                    "end_to_ack": stage("end_to_ack"), "total": stage("total")},
        "cases": results,
    })
}
