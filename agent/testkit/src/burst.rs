//! `hearken bench burst`: many utterances at once, far more than the local
//! engines finish within the latency budget, through the whole daemon
//! (private Mosquitto, simulated devices, audit log). Three runs over the
//! same synthesized commands: one at a time (the single-utterance
//! median), the burst on the local engines alone, and the burst with the
//! online fallback. The "online API" is a second pair of hearken engines on
//! loopback, each adding a fixed delay per request (`--delay-ms`). On a small
//! box they would compute on the local engines' cores, which no online API
//! does; so by default they first hear the burst once (every utterance sent
//! online, one at a time: real answers), then answer the timed burst's
//! identical requests from memory (`--replay-cache`): an online API with spare
//! capacity whose whole cost is the fixed delay. `--online-computes` skips
//! that and lets them compute every request on the shared cores.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::eval::percentile;
use hearken::config::{OnlineConfig, OnlineEndpointConfig, Privacy};
use hearken::local::EngineProcess;
use hearken::models;

use crate::demo::{load_cases, synthesize, Stage};

/// Arguments of `hearken bench burst`.
#[derive(Args)]
pub struct BenchBurstArgs {
    /// Utterances spoken at once.
    #[arg(long, default_value_t = 12)]
    utterances: usize,
    /// Synthesized set (JSON lines: text, commands); the first utterances that command something are used.
    #[arg(long, default_value = "tests/data/e2e_home.jsonl")]
    set: PathBuf,
    /// The catalog the set is written for.
    #[arg(long, default_value = "devices/home.toml")]
    catalog: PathBuf,
    /// Delay the stand-in online API adds to every request.
    #[arg(long, default_value_t = 100)]
    online_delay_ms: u64,
    /// Threads of each stand-in online engine.
    #[arg(long, default_value_t = 2)]
    online_threads: usize,
    /// The router's latency budget (`online.budget_ms`).
    #[arg(long, default_value_t = 400)]
    budget_ms: u64,
    /// The stand-in online engines compute every request on this box's cores (no replay).
    #[arg(long)]
    online_computes: bool,
}

/// Runs the three phases and prints one JSON report.
pub async fn bench_burst(args: BenchBurstArgs) -> anyhow::Result<ExitCode> {
    let (mut cases, _) = load_cases(&args.set, &args.catalog)?;
    cases.retain(|c| !c.commands.is_empty());
    if cases.len() < args.utterances {
        bail!("{} has only {} commanding utterances for {}", args.set.display(), cases.len(), args.catalog.display());
    }
    cases.truncate(args.utterances);
    let stage = Stage::start(&args.catalog, None).await?;
    let scratch = tempfile::tempdir()?;
    std::fs::create_dir_all(scratch.path().join("paced"))?;
    std::fs::create_dir_all(scratch.path().join("burst"))?;
    // One at a time: 2.5 s apart, at real time.
    let (paced, _) = synthesize(&cases, &scratch.path().join("paced"), 2_500)?;
    // All at once: the file is read as fast as it decodes, so every utterance
    // is cut and queued within milliseconds of the first.
    let (burst, _) = synthesize(&cases, &scratch.path().join("burst"), 800)?;

    eprintln!("bench burst: single utterances (local engines)");
    let single = stage
        .run_with(&args.catalog, &paced, &scratch.path().join("single.log"), false, |c| {
            c.audio.realtime = true;
        })
        .await?;
    eprintln!("bench burst: {} at once, local engines only", args.utterances);
    let local_only = stage
        .run_with(&args.catalog, &burst, &scratch.path().join("local.log"), false, |c| {
            c.audio.realtime = false;
            c.audio.queue_utterances = args.utterances;
        })
        .await?;

    eprintln!(
        "bench burst: {} at once, with the online fallback (+{} ms per request)",
        args.utterances, args.online_delay_ms
    );
    let online = StandIn::start(&args, scratch.path()).await?;
    let primed = if args.online_computes {
        Value::Null
    } else {
        // Every utterance online, one at a time: the stand-in computes real answers.
        let mut config = online.config(0);
        config.max_concurrent = 1;
        // Queued one behind another, the last would otherwise pass its deadline unsent.
        config.deadline_ms = 600_000;
        let lines = stage
            .run_with(&args.catalog, &burst, &scratch.path().join("prime.log"), false, |c| {
                c.audio.realtime = false;
                c.audio.queue_utterances = args.utterances;
                c.online = config;
            })
            .await?;
        json!({"run": phase(&lines, args.utterances), "stand_in": online.requests().await})
    };
    let online_config = online.config(args.budget_ms);
    let audit = scratch.path().join("online.log");
    let with_fallback = stage
        .run_with(&args.catalog, &burst, &audit, false, |c| {
            c.audio.realtime = false;
            c.audio.queue_utterances = args.utterances;
            c.online = online_config;
        })
        .await?;
    stage.simulator.stop().await;
    let audited = audited_split(&audit)?;

    let single = phase(&single, args.utterances);
    let local_only = phase(&local_only, args.utterances);
    let with_fallback = phase(&with_fallback, args.utterances);
    let single_median = single["end_to_ack"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let ratio = |p: &Value| p["end_to_ack"]["p95_ms"].as_f64().unwrap_or(f64::NAN) / single_median;
    let report = json!({
        "utterances": args.utterances,
        "online_delay_ms": args.online_delay_ms,
        "online_threads": args.online_threads,
        "budget_ms": args.budget_ms,
        "host_pressure_signals": "off (thresholds 10000 %), so the split shows the queue signal alone",
        "stand_in": if args.online_computes { "computes every request on this box's cores" } else { "replays the answers it computed in the priming run (spare capacity; cost = the fixed delay)" },
        "priming_run": primed,
        "single": single,
        "burst_local_only": local_only,
        "burst_with_fallback": with_fallback,
        "p95_over_single_median": {"local_only": ratio(&local_only), "with_fallback": ratio(&with_fallback)},
        "audit_log_split": audited,
        "online_requests": online.requests().await,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// End of speech → acknowledgement median/p95, utterances handled and
/// acknowledged, and where each stage ran.
fn phase(lines: &[Value], expected: usize) -> Value {
    let utterances: Vec<&Value> = lines.iter().filter(|l| l["utterance"].is_u64() && l["start_ms"].is_u64()).collect();
    let mut end_to_ack: Vec<f64> = utterances.iter().filter_map(|u| u["latency_ms"]["end_to_ack"].as_f64()).collect();
    end_to_ack.sort_by(f64::total_cmp);
    // Handled: decided without an error (a misheard command is handled, with no command).
    let handled = utterances.iter().filter(|u| u["error"].is_null()).count();
    let acknowledged = utterances
        .iter()
        .filter(|u| {
            let commands = u["commands"].as_array().cloned().unwrap_or_default();
            !commands.is_empty() && commands.iter().all(|c| c["outcome"] == "acknowledged")
        })
        .count();
    let count = |stage: &str, place: &str| utterances.iter().filter(|u| u["route"][stage]["where"] == place).count();
    json!({
        "expected": expected,
        "heard": utterances.len(),
        "handled": handled,
        "all_commands_acknowledged": acknowledged,
        "end_to_ack": {"n": end_to_ack.len(), "median_ms": percentile(&end_to_ack, 0.5), "p95_ms": percentile(&end_to_ack, 0.95)},
        "stt": {"local": count("stt", "local"), "online": count("stt", "online")},
        "intent": {"local": count("intent", "local"), "online": count("intent", "online")},
    })
}

/// Where the audit log says each utterance's speech stage ran.
fn audited_split(audit: &Path) -> anyhow::Result<Value> {
    let verified = hearken::audit::verify(audit)?;
    let text = std::fs::read_to_string(audit)?;
    let records: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let utterances: Vec<&Value> = records.iter().filter(|r| r["kind"] == "utterance").collect();
    let count = |place: &str| utterances.iter().filter(|r| r["route"]["stt"]["where"] == place).count();
    Ok(
        json!({"records": verified.records, "utterances": utterances.len(), "stt_local": count("local"), "stt_online": count("online")}),
    )
}

/// The stand-in online API: a `hearken-whisper` and a `hearken-llama` with
/// their own tokens, each delaying every request.
struct StandIn {
    stt: EngineProcess,
    intent: EngineProcess,
    stt_key: PathBuf,
    intent_key: PathBuf,
}

impl StandIn {
    async fn start(args: &BenchBurstArgs, dir: &Path) -> anyhow::Result<StandIn> {
        let cache = models::cache_dir();
        let mut common = vec![
            "--threads".to_owned(),
            args.online_threads.to_string(),
            "--delay-ms".to_owned(),
            args.online_delay_ms.to_string(),
        ];
        if !args.online_computes {
            common.push("--replay-cache".to_owned());
        }
        let startup = std::time::Duration::from_secs(120);
        let whisper = cache.join(models::WHISPER_TINY_EN_GGML);
        let stt_args: Vec<String> =
            ["--model".to_owned(), whisper.display().to_string()].into_iter().chain(common.clone()).collect();
        let stt =
            EngineProcess::start("hearken-whisper", &stt_args, startup).await.context("stand-in online speech API")?;
        let llm = models::smollm2_135m_path(&cache);
        let intent_args: Vec<String> =
            ["--model".to_owned(), llm.display().to_string()].into_iter().chain(common).collect();
        let intent =
            EngineProcess::start("hearken-llama", &intent_args, startup).await.context("stand-in online intent API")?;
        let stt_key = dir.join("online-stt.key");
        let intent_key = dir.join("online-intent.key");
        std::fs::write(&stt_key, &stt.token)?;
        std::fs::write(&intent_key, &intent.token)?;
        Ok(StandIn { stt, intent, stt_key, intent_key })
    }

    fn config(&self, budget_ms: u64) -> OnlineConfig {
        let endpoint = |url: &str, key: &Path, model: &str| OnlineEndpointConfig {
            api_key_file: Some(key.to_owned()),
            timeout_ms: 2_000,
            ..OnlineEndpointConfig::new(url, model)
        };
        OnlineConfig {
            privacy: Privacy::Any,
            budget_ms,
            cpu_threshold_percent: 10_000.0,
            memory_threshold_percent: 10_000.0,
            gpu_memory_threshold_percent: 10_000.0,
            max_concurrent: 64,
            stt: Some(endpoint(&self.stt.url, &self.stt_key, "whisper-1")),
            intent: Some(endpoint(&self.intent.url, &self.intent_key, "smollm2")),
            ..OnlineConfig::default()
        }
    }

    /// What each stand-in counted on `/stats`.
    async fn requests(&self) -> Value {
        let stats = |url: String| async move {
            match reqwest::get(format!("{url}/stats")).await {
                Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            }
        };
        json!({"stt": stats(self.stt.url.clone()).await, "intent": stats(self.intent.url.clone()).await})
    }
}
