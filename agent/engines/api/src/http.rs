//! What both inference engines (`hearken-whisper`, `hearken-llama`) share on
//! the server side: the bearer token, the loopback-or-Unix-socket rule, the
//! OpenAI-shaped error body, the first stdout line that tells a supervisor
//! where the engine listens and the traffic counts on `/stats`. One place, so
//! the two engines cannot drift apart on who they let in. The remote-API
//! simulation of tests and benchmarks sits behind the token check
//! ([`crate::simulation`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::simulation::{RemoteSimulation, Simulation};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::json;

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
    simulation: Simulation,
}

/// Counts an answer given from the replay cache (shown on `/stats`).
#[cfg_attr(not(feature = "simulation"), allow(dead_code))]
pub(crate) fn count_replayed() {
    TRAFFIC.replayed.fetch_add(1, Ordering::Relaxed);
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
        check.simulation.answer(check.max_body_bytes, request, next).await
    } else {
        // Read (and drop) the upload first, so the client gets the 401 rather
        // than a connection reset in the middle of sending its body.
        let _ = axum::body::to_bytes(request.into_body(), check.max_body_bytes).await;
        api_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
    }
}

/// Puts every route of `router` behind the bearer token (and, in builds with
/// the `simulation` feature, the remote-API `simulation`), counting each
/// request on `/stats`.
pub fn require_bearer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: String,
    max_body_bytes: usize,
    simulation: RemoteSimulation,
) -> Router<S> {
    let check = Arc::new(TokenCheck { token, max_body_bytes, simulation: Simulation::new(simulation) });
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
