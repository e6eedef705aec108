//! `hearken-whisper`: one whisper.cpp model behind an OpenAI-compatible
//! `POST /v1/audio/transcriptions`, on loopback or a Unix socket, with a
//! bearer token. It runs in its own process because whisper.cpp and
//! llama.cpp each vendor an incompatible ggml (see DESIGN.md).

mod loop_breaker;
mod transcriber;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use hearken::engine_http::{self, api_error};
use serde_json::json;

use transcriber::Transcriber;

/// Largest request body: 30 s of 48 kHz stereo float WAV, with room to spare.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "hearken-whisper",
    version,
    about = "Speech-to-text engine for hearken (whisper.cpp, OpenAI-compatible API)"
)]
struct Args {
    /// ggml whisper model (e.g. from `hearken models fetch`).
    #[arg(long)]
    model: PathBuf,
    /// Loopback address to listen on (port 0 picks a free one), or `unix:/path/to.sock`.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// File holding the bearer token clients must send (or set HEARKEN_ENGINE_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Behave like a remote API (tests and benchmarks of the online fallback).
    #[command(flatten)]
    remote: engine_http::RemoteSimulation,
    /// Inference threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Offload to the GPU when built with the `cuda` feature.
    #[arg(long)]
    gpu: bool,
}

struct Engine {
    transcriber: Transcriber,
    model_name: String,
    turns: engine_http::Turns,
}

fn main() -> anyhow::Result<()> {
    hearken::init_logging();
    let args = Args::parse();
    let token = engine_http::load_token(args.token_file.as_deref())?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    whisper_rs::install_logging_hooks();
    let transcriber = Transcriber::load(&args.model, threads, args.gpu)?;
    let model_name = args.model.file_name().map_or_else(|| "whisper".to_owned(), |n| n.to_string_lossy().into_owned());
    let engine = Arc::new(Engine { transcriber, model_name, turns: engine_http::Turns::default() });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(engine_http::serve(
        app(engine, token, args.remote.clone()),
        &args.listen,
        "hearken-whisper",
        json!({"threads": threads}),
    ))?;
    Ok(())
}

fn app(engine: Arc<Engine>, token: String, remote: engine_http::RemoteSimulation) -> Router {
    let protected = engine_http::require_bearer(
        Router::new().route("/v1/audio/transcriptions", post(transcriptions)),
        token,
        MAX_BODY_BYTES,
        remote,
    );
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(engine)
}

async fn health(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "model": engine.model_name}))
}

async fn transcriptions(State(engine): State<Arc<Engine>>, mut multipart: Multipart) -> Response {
    let mut file = None;
    let mut prompt = None;
    let mut language = "en".to_owned();
    let mut format = "json".to_owned();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("malformed multipart body: {e}")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("cannot read field {name}: {e}")),
        };
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "file" => file = Some(bytes.clone()),
            "prompt" => prompt = Some(text()),
            "language" => language = text(),
            "response_format" => format = text(),
            _ => {}
        }
    }
    if format != "json" && format != "text" {
        return api_error(StatusCode::BAD_REQUEST, format!("response_format '{format}' is not supported (json, text)"));
    }
    let Some(file) = file else { return api_error(StatusCode::BAD_REQUEST, "the 'file' field is required") };
    let audio = match hearken::audio::decode_wav(&file, "file") {
        Ok(audio) => audio,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let started = Instant::now();
    let worker = engine.clone();
    let result =
        engine.turns.run(move || worker.transcriber.transcribe(&audio.samples, prompt.as_deref(), &language)).await;
    let inference_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(transcript)) if format == "text" => transcript.text.into_response(),
        Ok(Ok(transcript)) => {
            Json(json!({"text": transcript.text, "audio_ctx": transcript.audio_ctx, "inference_ms": inference_ms}))
                .into_response()
        }
        Ok(Err(e @ transcriber::TranscribeError::TooLong { .. })) => {
            api_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Ok(Err(e)) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("inference task failed: {e}")),
    }
}
