//! `hearken listen`: the microphone (or stdin PCM) through the daemon's source stage and the recognizer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use hearken::audio::{self, vad, Heard, Input};
use hearken::daemon::metrics::Metrics;
use hearken::local::WhisperProcess;
use hearken::{config, millis};

use crate::common::default_model;

#[derive(Args)]
/// `hearken listen` flags.
pub(crate) struct ListenArgs {
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

/// Prints one line per utterance heard until the deadline, the end of stdin or Ctrl-C.
pub(crate) async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    // The daemon's own source stage: same capture, stdin reading and VAD.
    let audio = config::AudioConfig {
        source: if args.stdin { config::AudioSource::Stdin } else { config::AudioSource::Microphone },
        device: args.device.clone().unwrap_or_default(),
        end_silence_ms: args.end_silence_ms,
        aggressiveness: args.aggressiveness,
        max_utterance_ms: args.max_utterance_ms,
        ..config::AudioConfig::default()
    };
    vad::Segmenter::new(audio::vad_config(&audio))?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let engine = WhisperProcess::start(&default_model(args.model)?, threads).await?;
    let client = engine.client(Duration::from_secs(30))?;
    let (heard_tx, mut heard_rx) = tokio::sync::mpsc::channel::<Heard>(8);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics = Arc::new(Metrics::default());
    let worker = audio::spawn_source(audio, audio::UtteranceIds::default(), heard_tx, stop.clone(), metrics.clone());
    let source = if args.stdin { "stdin" } else { "mic" };
    let deadline = args.seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    loop {
        let next = tokio::select! {
            heard = heard_rx.recv() => heard,
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        // The speech source only ever yields speech.
        let Some(Heard { input: Input::Speech(segment), .. }) = next else { break };
        let line = match client.transcribe(&segment.samples, hearken::stt::Priming::NONE).await {
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
