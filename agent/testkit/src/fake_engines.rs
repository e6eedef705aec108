//! Fake engines: small axum servers that speak the engines' HTTP API
//! (`/v1/audio/transcriptions`, `/v1/chat/completions`) with scripted
//! answers, so the daemon's own logic — routing, validation of what a model
//! says, confirmations, dispatch — can be tested without the models. They
//! stand in for a remote server (`stt.url`, `intent.url`); black-box tests
//! with the real engines stay as they are.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the fake has been asked so far, and what it answers next.
#[derive(Default)]
struct Script {
    answers: VecDeque<String>,
    fallback: String,
    requests: Vec<Value>,
}

/// A running fake engine; stopped when dropped.
pub struct FakeEngine {
    address: SocketAddr,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeEngine {
    /// A chat engine answering `answers` in turn (the message content of each
    /// completion), then `fallback` for every further request.
    pub async fn chat(answers: &[&str], fallback: &str) -> std::io::Result<FakeEngine> {
        FakeEngine::start(answers, fallback, Router::new().route("/v1/chat/completions", post(chat))).await
    }

    /// A transcription engine answering `texts` in turn, then `fallback`.
    pub async fn stt(texts: &[&str], fallback: &str) -> std::io::Result<FakeEngine> {
        FakeEngine::start(texts, fallback, Router::new().route("/v1/audio/transcriptions", post(transcription))).await
    }

    async fn start(
        answers: &[&str],
        fallback: &str,
        routes: Router<Arc<Mutex<Script>>>,
    ) -> std::io::Result<FakeEngine> {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.iter().map(|a| (*a).to_owned()).collect(),
            fallback: fallback.to_owned(),
            requests: Vec::new(),
        }));
        let router =
            routes.route("/health", get(|| async { Json(json!({"status": "ok"})) })).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeEngine { address, script, server })
    }

    /// Its base URL, for `stt.url` / `intent.url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The chat requests received so far (their JSON bodies); empty for a transcription fake.
    pub fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap_or_else(|p| p.into_inner()).requests.clone()
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn next_answer(script: &Mutex<Script>, request: Value) -> String {
    let mut script = script.lock().unwrap_or_else(|p| p.into_inner());
    script.requests.push(request);
    let fallback = script.fallback.clone();
    script.answers.pop_front().unwrap_or(fallback)
}

async fn chat(State(script): State<Arc<Mutex<Script>>>, Json(request): Json<Value>) -> Json<Value> {
    let content = next_answer(&script, request);
    Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    }))
}

async fn transcription(State(script): State<Arc<Mutex<Script>>>, body: axum::body::Bytes) -> Json<Value> {
    let text = next_answer(&script, json!({"bytes": body.len()}));
    Json(json!({"text": text}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_fake_chat_engine_answers_its_script_then_the_fallback() {
        let fake = FakeEngine::chat(&["first"], "again").await.unwrap();
        let client =
            hearken::intent::ChatClient::new(&fake.url(), None, "fake", std::time::Duration::from_secs(5)).unwrap();
        let mut contents = Vec::new();
        for _ in 0..2 {
            contents.push(client.complete(&[], None, 8).await.unwrap().content);
        }
        assert_eq!(contents, ["first", "again"]);
        assert_eq!(fake.requests().len(), 2);
    }
}
