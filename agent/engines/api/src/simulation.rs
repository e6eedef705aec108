//! The remote-API simulation: flags that make an engine stand in for an
//! online API in tests and benchmarks of the online fallback (a delay per
//! request, an injected fault, a replay cache). Compiled only with the
//! `simulation` feature, which the test and bench crates turn on; an engine
//! built on its own (`cargo build -p hearken-llama`, the Debian package) has
//! none of these flags.

#[cfg(feature = "simulation")]
pub use enabled::*;

#[cfg(not(feature = "simulation"))]
pub use disabled::*;

#[cfg(not(feature = "simulation"))]
mod disabled {
    use axum::extract::Request;
    use axum::middleware::Next;
    use axum::response::Response;

    /// No flags: this engine was built without the `simulation` feature.
    #[derive(Debug, Clone, Default, clap::Args)]
    pub struct RemoteSimulation {}

    /// The simulation in force: none.
    pub(crate) struct Simulation;

    impl Simulation {
        pub(crate) fn new(_: RemoteSimulation) -> Simulation {
            Simulation
        }

        /// The handler's own answer.
        pub(crate) async fn answer(&self, _max_body_bytes: usize, request: Request, next: Next) -> Response {
            next.run(request).await
        }
    }
}

#[cfg(feature = "simulation")]
mod enabled {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use axum::extract::Request;
    use axum::http::{header, StatusCode};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use axum::Json;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    use crate::http::api_error;

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

    /// A successful answer kept for `--replay-cache`.
    #[derive(Clone)]
    struct Replay {
        content_type: Option<header::HeaderValue>,
        body: bytes::Bytes,
    }

    /// `--replay-cache`: the stored answer to an identical earlier request, or
    /// the handler's answer (stored when it succeeded).
    async fn replay_or_run(simulation: &Simulation, max_body_bytes: usize, request: Request, next: Next) -> Response {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, max_body_bytes).await else {
            return api_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        };
        let mut hasher = Sha256::new();
        hasher.update(parts.uri.path().as_bytes());
        // Multipart boundaries differ per request: hash the parts, not the framing.
        hasher.update(strip_multipart_boundaries(&parts.headers, &body));
        let key: [u8; 32] = hasher.finalize().into();
        let known = simulation.replies.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some(replay) = known {
            crate::http::count_replayed();
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
        simulation.replies.lock().unwrap_or_else(|p| p.into_inner()).insert(key, replay);
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
                let content =
                    json!({"intent": "control", "commands": [{"device": "no_such_device", "action": "explode"}]});
                Json(json!({"text": 42, "choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}}]}))
                    .into_response()
            }
        }
    }

    /// The simulation in force and the replay cache.
    pub(crate) struct Simulation {
        flags: RemoteSimulation,
        replies: Mutex<HashMap<[u8; 32], Replay>>,
    }

    impl Simulation {
        pub(crate) fn new(flags: RemoteSimulation) -> Simulation {
            Simulation { flags, replies: Mutex::new(HashMap::new()) }
        }

        /// After the delay: the injected fault, the replayed answer, or the handler's own.
        pub(crate) async fn answer(&self, max_body_bytes: usize, request: Request, next: Next) -> Response {
            if self.flags.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.flags.delay_ms)).await;
            }
            match self.flags.fault {
                None if self.flags.replay_cache => replay_or_run(self, max_body_bytes, request, next).await,
                None => next.run(request).await,
                Some(fault) => {
                    let _ = axum::body::to_bytes(request.into_body(), max_body_bytes).await;
                    injected(fault)
                }
            }
        }
    }
}
