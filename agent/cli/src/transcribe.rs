//! `hearken transcribe`: WAV files through the local whisper engine or a server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use hearken::local::WhisperProcess;
use hearken::{audio, millis, stt};

use crate::common::{default_model, server_token};

#[derive(Args)]
/// `hearken transcribe` flags.
pub(crate) struct TranscribeArgs {
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
    /// Favour this catalog's device names, aliases and areas while decoding, as the
    /// daemon does (`stt.vocabulary_from_catalog`); the line then also has `free_text`
    /// when that changed a word.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Request timeout per file.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// WAV files (8–48 kHz, 8/16/24/32-bit PCM or float, any channel count).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Transcribes each file and prints one line per file.
pub(crate) async fn transcribe(args: TranscribeArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let (_engine, client) = match &args.stt_url {
        Some(url) => {
            let token = server_token(args.stt_token_file.as_deref(), "HEARKEN_STT_TOKEN")?;
            (None, stt::SttClient::new(url, token, timeout)?)
        }
        None => {
            let model = default_model(args.model)?;
            let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let engine = WhisperProcess::start(&model, threads).await?;
            let client = engine.client(timeout)?;
            (Some(engine), client)
        }
    };
    let vocabulary = match &args.catalog {
        None => Vec::new(),
        Some(path) => match crate::common::load_catalog(path) {
            Ok(catalog) => stt::catalog_vocabulary(&catalog),
            Err(code) => return Ok(code),
        },
    };
    let priming = stt::Priming { prompt: args.prompt.as_deref(), vocabulary: &vocabulary };
    let mut failed = false;
    for file in &args.files {
        let line = match audio::read_wav(file) {
            Err(e) => {
                failed = true;
                json!({"file": file, "error": e.to_string()})
            }
            Ok(decoded) => match client.transcribe(&decoded.samples, priming).await {
                Ok(result) => {
                    let mut line =
                        json!({"file": file, "text": result.text, "latency_ms": {"stt": millis(result.latency)}});
                    if let Some(free_text) = result.free_text {
                        line["free_text"] = json!(free_text);
                    }
                    line
                }
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
