//! `hearken-whisper`: one whisper.cpp model behind an OpenAI-compatible
//! `POST /v1/audio/transcriptions`, on loopback or a Unix socket, with a
//! bearer token. It runs in its own process because whisper.cpp and
//! llama.cpp each vendor an incompatible ggml (see DESIGN.md).

mod transcriber;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use axum::extract::{DefaultBodyLimit, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
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
    /// Inference threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Offload to the GPU when built with the `cuda` feature.
    #[arg(long)]
    gpu: bool,
}

struct Engine {
    transcriber: Transcriber,
    token: String,
    model_name: String,
}

fn main() -> anyhow::Result<()> {
    hearken::init_logging();
    let args = Args::parse();
    let token = match &args.token_file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned()
        }
        None => std::env::var("HEARKEN_ENGINE_TOKEN").unwrap_or_default(),
    };
    if token.len() < 16 {
        bail!("a bearer token of at least 16 characters is required (--token-file or HEARKEN_ENGINE_TOKEN)");
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    whisper_rs::install_logging_hooks();
    let transcriber = Transcriber::load(&args.model, threads, args.gpu)?;
    let model_name = args.model.file_name().map_or_else(|| "whisper".to_owned(), |n| n.to_string_lossy().into_owned());
    let engine = Arc::new(Engine { transcriber, token, model_name });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(serve(engine, &args.listen, threads))
}

fn app(engine: Arc<Engine>) -> Router {
    let protected = Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .layer(axum::middleware::from_fn_with_state(engine.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(engine)
}

async fn serve(engine: Arc<Engine>, listen: &str, threads: usize) -> anyhow::Result<()> {
    let router = app(engine);
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("cannot bind {path}"))?;
        println!("{}", json!({"engine": "hearken-whisper", "listening": listen, "threads": threads}));
        axum::serve(listener, router).with_graceful_shutdown(hearken::shutdown_signal()).await?;
        return Ok(());
    }
    let address: SocketAddr = listen.parse().with_context(|| format!("'{listen}' is not an address or unix:/path"))?;
    if !address.ip().is_loopback() {
        bail!("refusing to listen on {address}: engines listen only on loopback or a Unix socket");
    }
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot bind {address}"))?;
    let bound = listener.local_addr()?;
    println!("{}", json!({"engine": "hearken-whisper", "listening": bound.to_string(), "threads": threads}));
    axum::serve(listener, router).with_graceful_shutdown(hearken::shutdown_signal()).await?;
    Ok(())
}

/// An error in OpenAI's shape.
fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_token(State(engine): State<Arc<Engine>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if tokens_match(given, &engine.token) {
        next.run(request).await
    } else {
        // Read (and drop) the upload first, so the client gets the 401 rather
        // than a connection reset in the middle of sending its body.
        let _ = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await;
        api_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
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
    let result = tokio::task::spawn_blocking(move || {
        worker.transcriber.transcribe(&audio.samples, prompt.as_deref(), &language)
    })
    .await;
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
