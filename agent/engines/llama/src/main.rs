//! `hearken-llama`: one GGUF language model behind an OpenAI-compatible
//! `POST /v1/chat/completions`, with `response_format` JSON Schema enforced
//! during decoding (llguidance), on loopback or a Unix socket, with a bearer
//! token. It runs in its own process because llama.cpp and whisper.cpp each
//! vendor an incompatible ggml (see DESIGN.md).

mod generator;
mod threads;
mod tok_env;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use hearken_engine_api::http::{self as engine_http, api_error};
use hearken_engine_api::request as engine_request;
use serde_json::{json, Value};

use generator::{GenerateError, Generator, GeneratorConfig};

#[derive(Parser)]
#[command(
    name = "hearken-llama",
    version,
    about = "Intent engine for hearken (llama.cpp, OpenAI-compatible chat API with JSON-Schema-constrained output)"
)]
struct Args {
    /// GGUF model (e.g. from `hearken models fetch`).
    #[arg(long)]
    model: PathBuf,
    /// Loopback address to listen on (port 0 picks a free one), or `unix:/path/to.sock`.
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: String,
    /// File holding the bearer token clients must send (or set HEARKEN_ENGINE_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Behave like a remote API (tests and benchmarks of the online fallback; only in builds
    /// with the `simulation` feature).
    #[command(flatten)]
    remote: hearken_engine_api::simulation::RemoteSimulation,
    /// Most threads for generating tokens one at a time (default: all cores); each request
    /// uses the cores other work leaves free, at least one.
    #[arg(long)]
    threads: Option<usize>,
    /// Most threads for decoding prompts (default: same as --threads).
    #[arg(long)]
    threads_batch: Option<usize>,
    /// Always use --threads and --threads-batch, even when other work keeps cores busy (to
    /// measure what adapting saves).
    #[arg(long)]
    fixed_threads: bool,
    /// Context length in tokens (prompt + completion).
    #[arg(long, default_value_t = 2048)]
    ctx_size: u32,
    /// Layers to offload to the GPU when built with the `cuda` feature.
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
    /// Sample grammar-forced tokens one by one instead of jumping forward (to measure what
    /// jump-forward saves).
    #[arg(long)]
    no_jump_forward: bool,
    /// Largest request body in bytes; a larger one is refused with 413.
    #[arg(long, default_value_t = engine_request::CHAT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Most completion tokens a request may ask for (this bounds how long one request
    /// computes); a request asking more is refused with 413.
    #[arg(long, default_value_t = engine_request::CHAT_MAX_TOKENS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_tokens: u64,
}

struct Engine {
    generator: Mutex<Generator>,
    model_name: String,
    turns: engine_http::Turns,
    max_tokens: usize,
}

fn main() -> anyhow::Result<()> {
    hearken_engine_api::init_logging();
    let args = Args::parse();
    let token = engine_http::load_token(args.token_file.as_deref())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let threads_batch = args.threads_batch.unwrap_or(threads).max(1);
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let config = GeneratorConfig {
        n_ctx: args.ctx_size,
        threads: threads as i32,
        threads_batch: threads_batch as i32,
        gpu_layers: args.gpu_layers,
        jump_forward: !args.no_jump_forward,
        adaptive_threads: !args.fixed_threads,
    };
    let generator = Generator::load(&args.model, &config)?;
    let model_name = args.model.file_name().map_or_else(|| "gguf".to_owned(), |n| n.to_string_lossy().into_owned());
    let engine = Arc::new(Engine {
        generator: Mutex::new(generator),
        model_name,
        turns: engine_http::Turns::default(),
        max_tokens: usize::try_from(args.max_tokens).unwrap_or(usize::MAX),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let info = json!({"threads": threads, "threads_batch": threads_batch, "adaptive_threads": !args.fixed_threads,
                      "ctx_size": args.ctx_size});
    runtime.block_on(engine_http::serve(
        app(engine, token, args.remote.clone(), args.max_body_bytes),
        &args.listen,
        "hearken-llama",
        info,
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
        Router::new().route("/v1/chat/completions", post(chat_completions)),
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

async fn health(State(engine): State<Arc<Engine>>) -> Json<Value> {
    Json(json!({"status": "ok", "model": engine.model_name}))
}

async fn chat_completions(State(engine): State<Arc<Engine>>, body: Bytes) -> Response {
    let job = match engine_request::parse_chat(&body, engine.max_tokens) {
        Ok(job) => job,
        Err(e) => return api_error(e.status(), e.to_string()),
    };
    let (messages, schema, max_tokens) = (job.messages, job.schema, job.max_tokens);
    let worker = engine.clone();
    let started = Instant::now();
    let result = engine
        .turns
        .run(move || {
            let mut generator = worker.generator.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let matcher = schema.as_ref().map(|s| generator.compile_schema(s)).transpose()?;
            let prompt = generator.render_chat(&messages)?;
            generator.generate(&prompt, matcher, max_tokens)
        })
        .await;
    let completion = match result {
        Ok(Ok(completion)) => completion,
        Ok(Err(GenerateError::BadRequest(message))) => return api_error(StatusCode::BAD_REQUEST, message),
        Ok(Err(e)) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("inference task failed: {e}")),
    };
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Json(json!({
        "id": format!("chatcmpl-{created}-{}", rand_suffix()),
        "object": "chat.completion",
        "created": created,
        "model": engine.model_name,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": completion.finish_reason,
        }],
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": completion.cached_tokens},
        },
        "timings": {
            "prompt_ms": completion.prompt_ms,
            "generate_ms": completion.generate_ms,
            "forced_tokens": completion.forced_tokens,
            "threads": completion.threads,
            "total_ms": started.elapsed().as_secs_f64() * 1000.0,
        },
    }))
    .into_response()
}

/// A short unique-enough suffix for completion ids.
fn rand_suffix() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}
