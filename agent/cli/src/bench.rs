//! `hearken bench`: the benchmarks, whose code lives in `hearken-testkit`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use hearken::models;
use hearken_testkit::{bench, burst, demo, eval, hearing, soak};

use crate::runtime;

#[derive(Subcommand)]
/// `hearken bench …`.
pub(crate) enum BenchCommand {
    /// Publish → acknowledgement latency and throughput through a real broker and the simulator.
    Mqtt(BenchMqttArgs),
    /// Transcription latency and word error rate on synthesized commands, side by side with
    /// faster-whisper on the same weights (see scripts/bench-stt.sh for the throwaway venv).
    Stt(BenchSttArgs),
    /// Intent accuracy (exact command sets) and latency on the dev sets, clean text and
    /// whisper tiny.en transcripts of the same commands.
    Nlu(BenchNluArgs),
    /// End to end through the daemon: synthesized commands (espeak-ng) as one real-time
    /// stream, a private Mosquitto and the simulator; per-stage median/p95 and the share of
    /// utterances whose acknowledged commands are exactly the expected ones.
    E2e(hearken_testkit::demo::BenchE2eArgs),
    /// Many utterances at once through the daemon, with and without the online fallback
    /// (a stand-in online API: a second pair of engines adding a fixed delay per request,
    /// answering the timed burst from what they computed in a priming run unless
    /// --online-computes): end of speech → acknowledgement median/p95 and the local/online split.
    Burst(hearken_testkit::burst::BenchBurstArgs),
    /// A text dev set spoken in natural voices (Kokoro, Piper) and a noisy room, through
    /// `hearken process`: exact commands, false actions and STT median/p95 per voice.
    Hearing(hearken_testkit::hearing::BenchHearingArgs),
    /// Thousands of commands through the daemon's text path with faults injected
    /// (acknowledgements dropped/late/duplicated/forged/malformed, broker restarts,
    /// engines killed, a failing online API): every command accounted for, and the
    /// invariants checked (nothing published twice, after a reconnect or outside the
    /// catalog; the audit log verifies; the daemon's memory at start and end). Exits 1
    /// when an invariant fails.
    Soak(hearken_testkit::soak::BenchSoakArgs),
    /// VAD segmentation speed on one core.
    Vad {
        /// Runs over one minute of audio.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

#[derive(Args)]
pub(crate) struct BenchSttArgs {
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
pub(crate) struct BenchMqttArgs {
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

/// Runs one benchmark; each prints one JSON report.
pub(crate) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Mqtt(args) => {
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
        BenchCommand::Stt(args) => {
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
        BenchCommand::Nlu(args) => runtime()?.block_on(bench_nlu(args)),
        BenchCommand::E2e(args) => runtime()?.block_on(demo::bench_e2e(args)),
        BenchCommand::Burst(args) => runtime()?.block_on(burst::bench_burst(args)),
        BenchCommand::Hearing(args) => runtime()?.block_on(hearing::bench_hearing(args)),
        BenchCommand::Soak(args) => runtime()?.block_on(soak::bench_soak(args)),
        BenchCommand::Vad { runs } => {
            println!("{}", serde_json::to_string(&bench::vad(runs)?)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Arguments of `hearken bench nlu`.
#[derive(Args)]
pub(crate) struct BenchNluArgs {
    /// Dev sets (JSON lines: catalog, kind, text, commands); catalog paths are relative to
    /// the current directory.
    #[arg(
        long = "set",
        default_values = ["tests/data/nlu_dev.jsonl", "tests/data/nlu_dev_asr.jsonl", "tests/data/understanding_dev.jsonl"]
    )]
    sets: Vec<PathBuf>,
    #[command(flatten)]
    engine: crate::interpret::EngineArgs,
    /// Score only this half of the sets that have halves (`tune`, `held`).
    #[arg(long)]
    half: Option<String>,
    /// Print every case, not only the wrong ones.
    #[arg(long)]
    all_cases: bool,
}

/// Prints one JSON report per set: accuracy (overall and per kind), false
/// commands on non-commands, latency median and p95, and the wrong cases.
async fn bench_nlu(args: BenchNluArgs) -> anyhow::Result<ExitCode> {
    let (_engine, client) = args.engine.connect().await?;
    let config = args.engine.config();
    for set in &args.sets {
        let mut cases = eval::load_set(set)?;
        if let Some(half) = &args.half {
            cases.retain(|c| c.half.as_deref().is_none_or(|h| h == half));
        }
        let mut report = eval::evaluate(&cases, std::path::Path::new("."), &client, &config).await?;
        if !args.all_cases {
            report.results.retain(|r| !r.correct);
        }
        let mut value = serde_json::to_value(&report)?;
        value["set"] = json!(set);
        println!("{value}");
    }
    Ok(ExitCode::SUCCESS)
}
