//! `hearken-whisper`: one whisper.cpp model behind an OpenAI-compatible
//! `POST /v1/audio/transcriptions`, on loopback or a Unix socket, with a
//! bearer token. It runs in its own process because whisper.cpp and
//! llama.cpp each vendor an incompatible ggml (see DESIGN.md).

mod logits_filter;
mod transcriber;
mod vocabulary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use hearken_engine_api::http::{self as engine_http, api_error};
use hearken_engine_api::request as engine_request;
use serde_json::json;

use transcriber::Transcriber;

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
    /// Behave like a remote API (tests and benchmarks of the online fallback; only in builds
    /// with the `simulation` feature).
    #[command(flatten)]
    remote: hearken_engine_api::simulation::RemoteSimulation,
    /// Most inference threads (default: all cores); each request uses the cores other work
    /// leaves free, at least one.
    #[arg(long)]
    threads: Option<usize>,
    /// Always use --threads, even when other work keeps cores busy (to measure what adapting
    /// saves).
    #[arg(long)]
    fixed_threads: bool,
    /// Offload to the GPU when built with the `cuda` feature.
    #[arg(long)]
    gpu: bool,
    /// Largest request body in bytes; a larger one is refused with 413.
    #[arg(long, default_value_t = engine_request::TRANSCRIPTION_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Longest clip per request in ms (it bounds how long one request computes; a clip longer
    /// than whisper's 30 s window is cut in pauses and its pieces transcribed in turn); a
    /// longer one is refused with 413.
    #[arg(long, default_value_t = engine_request::TRANSCRIPTION_MAX_AUDIO_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_audio_ms: u64,
}

struct Engine {
    transcriber: Transcriber,
    model_name: String,
    turns: engine_http::Turns,
    max_audio_ms: u64,
}

fn main() -> anyhow::Result<()> {
    hearken_engine_api::init_logging();
    let args = Args::parse();
    let token = engine_http::load_token(args.token_file.as_deref())?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    whisper_rs::install_logging_hooks();
    let budget = hearken_engine_api::cores::ThreadBudget::new(threads, !args.fixed_threads);
    let transcriber = Transcriber::load(&args.model, budget, args.gpu)?;
    let model_name = args.model.file_name().map_or_else(|| "whisper".to_owned(), |n| n.to_string_lossy().into_owned());
    let engine = Arc::new(Engine {
        transcriber,
        model_name,
        turns: engine_http::Turns::default(),
        max_audio_ms: args.max_audio_ms,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(engine_http::serve(
        app(engine, token, args.remote.clone(), args.max_body_bytes),
        &args.listen,
        "hearken-whisper",
        json!({"threads": threads, "adaptive_threads": !args.fixed_threads}),
    ))?;
    Ok(())
}

fn app(
    engine: Arc<Engine>,
    token: String,
    remote: hearken_engine_api::simulation::RemoteSimulation,
    max_body_bytes: usize,
) -> Router {
    let protected = engine_http::require_bearer(
        Router::new().route("/v1/audio/transcriptions", post(transcriptions)),
        token,
        max_body_bytes,
        remote,
    );
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(engine)
}

async fn health(State(engine): State<Arc<Engine>>) -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "model": engine.model_name}))
}

async fn transcriptions(State(engine): State<Arc<Engine>>, multipart: Multipart) -> Response {
    let job = match engine_request::read_transcription(multipart, engine.max_audio_ms).await {
        Ok(job) => job,
        Err(e) => return api_error(e.status(), e.to_string()),
    };
    let (audio, prompt, language, text_format) = (job.audio, job.prompt, job.language, job.text_format);
    let phrases = job.vocabulary;
    let started = Instant::now();
    let worker = engine.clone();
    let result = engine
        .turns
        .run(move || {
            let vocabulary = worker.transcriber.vocabulary(&phrases);
            worker.transcriber.transcribe(&audio.samples, prompt.as_deref(), &vocabulary, &language)
        })
        .await;
    let inference_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(Ok(transcript)) if text_format => transcript.text.into_response(),
        Ok(Ok(transcript)) => {
            let mut reply = json!({"text": transcript.text, "audio_ctx": transcript.audio_ctx,
                                   "threads": transcript.threads, "inference_ms": inference_ms});
            if let Some(free_text) = transcript.free_text {
                reply["free_text"] = json!(free_text);
            }
            Json(reply).into_response()
        }
        Ok(Err(e)) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("inference task failed: {e}")),
    }
}
