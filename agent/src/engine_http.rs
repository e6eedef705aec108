//! What both inference engines (`hearken-whisper`, `hearken-llama`) share on
//! the server side: the bearer token, the loopback-or-Unix-socket rule, the
//! OpenAI-shaped error body, the first stdout line that tells a supervisor
//! where the engine listens, the traffic counts on `/stats`, and the remote-API
//! simulation (`--delay-ms`, `--fault`) that lets an engine stand in for an
//! online API in tests and benchmarks. One place, so the two engines cannot
//! drift apart on who they let in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Shortest bearer token an engine accepts.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Errors while setting up an engine's HTTP side.
#[derive(Debug, thiserror::Error)]
pub enum EngineHttpError {
    /// The token file cannot be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No token, or one too short to be a secret.
    #[error(
        "a bearer token of at least {MIN_TOKEN_CHARS} characters is required (--token-file or HEARKEN_ENGINE_TOKEN)"
    )]
    WeakToken,
    /// The listen address is neither a loopback address nor `unix:/path`.
    #[error("'{0}' is not a loopback address or unix:/path; engines listen only on loopback or a Unix socket")]
    NotLoopback(String),
    /// Binding or serving failed.
    #[error("cannot serve on {address}: {source}")]
    Serve {
        /// Where.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the token from `token_file`, else from `HEARKEN_ENGINE_TOKEN`, and
/// refuses a missing or short one.
pub fn load_token(token_file: Option<&Path>) -> Result<String, EngineHttpError> {
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| EngineHttpError::TokenFile { path: path.display().to_string(), source })?
            .trim()
            .to_owned(),
        None => std::env::var("HEARKEN_ENGINE_TOKEN").unwrap_or_default(),
    };
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(EngineHttpError::WeakToken);
    }
    Ok(token)
}

/// An error in OpenAI's shape: `{"error": {"message", "type"}}`.
pub fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A fault an engine injects in place of every API answer, so that tests of
/// the online fallback meet real HTTP failures from a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// 429 Too Many Requests (a rate-limited API).
    Status429,
    /// 500 Internal Server Error.
    Status500,
    /// 200 with a body that is not JSON.
    MalformedJson,
    /// 200 with JSON in the wrong shape: `text` is not a string, and the chat
    /// content commands a device no catalog has.
    OffSchema,
}

/// Flags that make an engine behave like a remote API: a fixed delay per
/// request (the network) and, optionally, a fault instead of every answer.
/// For tests and benchmarks of the online fallback; off by default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RemoteSimulation {
    /// Wait this long before answering each API request (simulates a remote API's round trip).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Answer every API request with this fault instead (tests of the online fallback).
    #[arg(long, value_enum)]
    pub fault: Option<Fault>,
    /// Answer a request identical to one answered before from memory, after the delay: a
    /// stand-in for a remote API with spare capacity spends no local CPU on repeats (benchmarks).
    #[arg(long)]
    pub replay_cache: bool,
}

/// What reached this engine: shown on `/stats`, so a test can prove that
/// nothing was sent to an endpoint (zero connections), not merely that
/// nothing was answered. One engine per process, so one count per process.
struct Traffic {
    connections: AtomicU64,
    requests: AtomicU64,
    replayed: AtomicU64,
    abandoned: AtomicU64,
}

static TRAFFIC: Traffic = Traffic {
    connections: AtomicU64::new(0),
    requests: AtomicU64::new(0),
    replayed: AtomicU64::new(0),
    abandoned: AtomicU64::new(0),
};

/// One inference at a time, taken in turn. A request waits for its turn
/// without holding a thread, so a client that gives up while waiting (a
/// timeout, a deadline) takes its request out of the queue: an engine serving
/// several boxes does not compute answers nobody will read. The work itself
/// runs on a blocking thread that keeps the turn until it is done, so an
/// abandoned computation never overlaps the next one.
#[derive(Clone, Default)]
pub struct Turns(Arc<tokio::sync::Mutex<()>>);

/// Counts a request abandoned before its turn came (dropped while waiting).
struct Waiting {
    served: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.served {
            TRAFFIC.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Turns {
    /// Runs `work` on a blocking thread once it is this request's turn.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let mut waiting = Waiting { served: false };
        let turn = self.0.clone().lock_owned().await;
        waiting.served = true;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work()
        })
        .await
    }
}

fn count_connection<T>(_: &mut T) {
    TRAFFIC.connections.fetch_add(1, Ordering::Relaxed);
}

async fn stats() -> Json<serde_json::Value> {
    Json(json!({
        "connections": TRAFFIC.connections.load(Ordering::Relaxed),
        "requests": TRAFFIC.requests.load(Ordering::Relaxed),
        "replayed": TRAFFIC.replayed.load(Ordering::Relaxed),
        "abandoned": TRAFFIC.abandoned.load(Ordering::Relaxed),
    }))
}

struct TokenCheck {
    token: String,
    max_body_bytes: usize,
    simulation: RemoteSimulation,
    replies: Mutex<HashMap<[u8; 32], Replay>>,
}

/// A successful answer kept for `--replay-cache`.
#[derive(Clone)]
struct Replay {
    content_type: Option<header::HeaderValue>,
    body: bytes::Bytes,
}

async fn require_token(State(check): State<Arc<TokenCheck>>, request: Request, next: Next) -> Response {
    TRAFFIC.requests.fetch_add(1, Ordering::Relaxed);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if tokens_match(given, &check.token) {
        if check.simulation.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(check.simulation.delay_ms)).await;
        }
        match check.simulation.fault {
            None if check.simulation.replay_cache => replay_or_run(&check, request, next).await,
            None => next.run(request).await,
            Some(fault) => {
                let _ = axum::body::to_bytes(request.into_body(), check.max_body_bytes).await;
                injected(fault)
            }
        }
    } else {
        // Read (and drop) the upload first, so the client gets the 401 rather
        // than a connection reset in the middle of sending its body.
        let _ = axum::body::to_bytes(request.into_body(), check.max_body_bytes).await;
        api_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}

/// `--replay-cache`: the stored answer to an identical earlier request, or
/// the handler's answer (stored when it succeeded).
async fn replay_or_run(check: &TokenCheck, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, check.max_body_bytes).await else {
        return api_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.uri.path().as_bytes());
    // Multipart boundaries differ per request: hash the parts, not the framing.
    hasher.update(strip_multipart_boundaries(&parts.headers, &body));
    let key: [u8; 32] = hasher.finalize().into();
    let known = check.replies.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
    if let Some(replay) = known {
        TRAFFIC.replayed.fetch_add(1, Ordering::Relaxed);
        let mut response = replay.body.into_response();
        if let Some(content_type) = replay.content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, content_type);
        }
        return response;
    }
    let response = next.run(Request::from_parts(parts, axum::body::Body::from(body))).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot buffer the answer");
    };
    let replay = Replay { content_type: parts.headers.get(header::CONTENT_TYPE).cloned(), body: body.clone() };
    check.replies.lock().unwrap_or_else(|p| p.into_inner()).insert(key, replay);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The body with every occurrence of its multipart boundary removed (the body itself otherwise).
fn strip_multipart_boundaries(headers: &axum::http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').as_bytes().to_vec());
    let Some(boundary) = boundary.filter(|b| !b.is_empty()) else { return body.to_vec() };
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(&boundary) {
            i += boundary.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// The answer an injected fault gives.
fn injected(fault: Fault) -> Response {
    match fault {
        Fault::Status429 => api_error(StatusCode::TOO_MANY_REQUESTS, "rate limited (injected fault)"),
        Fault::Status500 => api_error(StatusCode::INTERNAL_SERVER_ERROR, "server error (injected fault)"),
        Fault::MalformedJson => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"choices\": [").into_response()
        }
        Fault::OffSchema => {
            let content = json!({"intent": "control", "commands": [{"device": "no_such_device", "action": "explode"}]});
            Json(json!({"text": 42, "choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}}]}))
                .into_response()
        }
    }
}

/// Puts every route of `router` behind the bearer token (and, for tests and
/// benchmarks, the remote-API `simulation`), counting each request on `/stats`.
pub fn require_bearer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: String,
    max_body_bytes: usize,
    simulation: RemoteSimulation,
) -> Router<S> {
    let check = Arc::new(TokenCheck { token, max_body_bytes, simulation, replies: Mutex::new(HashMap::new()) });
    router.layer(axum::middleware::from_fn_with_state(check, require_token))
}

/// Serves `router`, plus `GET /stats` (connections and API requests so far),
/// on `listen` (a loopback `address:port`, port 0 for a free one, or
/// `unix:/path`) until SIGINT/SIGTERM. Before serving it prints one JSON line
/// `{"engine", "listening", …info}` on stdout: how a supervisor learns the
/// bound address.
pub async fn serve(router: Router, listen: &str, engine: &str, info: serde_json::Value) -> Result<(), EngineHttpError> {
    let router = router.route("/stats", get(stats));
    let announce = |address: String| {
        let mut line = json!({"engine": engine, "listening": address});
        if let (Some(line), Some(info)) = (line.as_object_mut(), info.as_object()) {
            line.extend(info.clone());
        }
        println!("{line}");
    };
    let serve_error = |source| EngineHttpError::Serve { address: listen.to_owned(), source };
    if let Some(path) = listen.strip_prefix("unix:") {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).map_err(serve_error)?.tap_io(count_connection);
        announce(listen.to_owned());
        return axum::serve(listener, router)
            .with_graceful_shutdown(crate::shutdown_signal())
            .await
            .map_err(serve_error);
    }
    let address: SocketAddr = listen.parse().map_err(|_| EngineHttpError::NotLoopback(listen.to_owned()))?;
    if !address.ip().is_loopback() {
        return Err(EngineHttpError::NotLoopback(listen.to_owned()));
    }
    let listener = tokio::net::TcpListener::bind(address).await.map_err(serve_error)?;
    announce(listener.local_addr().map_err(serve_error)?.to_string());
    let listener = listener.tap_io(count_connection);
    axum::serve(listener, router).with_graceful_shutdown(crate::shutdown_signal()).await.map_err(serve_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly() {
        assert!(tokens_match("0123456789abcdef", "0123456789abcdef"));
        assert!(!tokens_match("0123456789abcdeX", "0123456789abcdef"));
        assert!(!tokens_match("0123456789abcdef0", "0123456789abcdef"));
        assert!(!tokens_match("", "0123456789abcdef"));
    }
}
