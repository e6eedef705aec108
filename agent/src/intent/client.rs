//! The chat-completions client: OpenAI's `POST /v1/chat/completions` with a
//! `response_format` JSON Schema, for hearken's own `hearken-llama` and for
//! any server that speaks the same API; and the supervisor that starts a
//! local `hearken-llama`.

use std::time::Duration;

use serde_json::{json, Value};

/// Errors of talking to a chat-completions server.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The server could not be reached or did not answer in time.
    #[error("intent engine {url}: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("intent engine {url} answered {status}: {message}")]
    Status {
        /// The server.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer is not a chat completion.
    #[error("intent engine {url} sent an unreadable answer: {reason}")]
    BadAnswer {
        /// The server.
        url: String,
        /// Why it is unreadable.
        reason: String,
    },
    /// The engine process could not be started.
    #[error(transparent)]
    Spawn(#[from] crate::local::EngineProcessError),
}

/// One chat message.
#[derive(Debug, Clone)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// One completion as the client saw it.
#[derive(Debug, Clone)]
pub struct ChatReply {
    /// The assistant's text.
    pub content: String,
    /// Request → answer.
    pub latency: Duration,
    /// Prompt tokens the server reused from its cache, when it says.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens, when the server says.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, when the server says.
    pub completion_tokens: Option<u64>,
    /// Of those, tokens the grammar forced (a `hearken-llama` extension).
    pub forced_tokens: Option<u64>,
}

/// A client for one OpenAI-compatible chat endpoint.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
    model: String,
    params: ChatParams,
}

/// The sampling parameters a client sends. The local engine gets the
/// defaults; an online model gets what `[online.intent]` maps them to
/// (docs/online.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChatParams {
    /// `temperature` (the local engine is greedy whatever it says).
    pub temperature: f64,
    /// `response_format.json_schema.strict`.
    pub strict: bool,
    /// `max_tokens` instead of the caller's per-request value, when set.
    pub max_tokens: Option<u32>,
}

impl Default for ChatParams {
    fn default() -> Self {
        ChatParams { temperature: 0.0, strict: true, max_tokens: None }
    }
}

impl ChatClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8082`), sending
    /// `token` as a bearer token when given and naming `model` in requests.
    pub fn new(base_url: &str, token: Option<String>, model: &str, timeout: Duration) -> Result<ChatClient, ChatError> {
        let http = crate::http::client(timeout)
            .map_err(|e| ChatError::Unreachable { url: base_url.to_owned(), reason: e.to_string() })?;
        Ok(ChatClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            model: model.to_owned(),
            params: ChatParams::default(),
        })
    }

    /// The same client sending `params` instead of the defaults.
    pub fn with_params(mut self, params: ChatParams) -> ChatClient {
        self.params = params;
        self
    }

    /// Asks for a completion whose content must match `schema` (when given).
    pub async fn complete(
        &self,
        messages: &[Message],
        schema: Option<&Value>,
        max_tokens: u32,
    ) -> Result<ChatReply, ChatError> {
        let url = format!("{}/v1/chat/completions", self.base_url);
        let messages: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": self.params.max_tokens.unwrap_or(max_tokens),
            "temperature": self.params.temperature,
        });
        if let Some(schema) = schema {
            let strict = self.params.strict;
            body["response_format"] =
                json!({"type": "json_schema", "json_schema": {"name": "commands", "strict": strict, "schema": schema}});
        }
        let request = self.http.post(&url).json(&body);
        let answer = crate::http::exchange(request, self.token.as_deref())
            .await
            .map_err(|reason| ChatError::Unreachable { url: url.clone(), reason })?;
        let latency = answer.latency;
        if !answer.status.is_success() {
            let status = answer.status.as_u16();
            return Err(ChatError::Status { url, status, message: answer.error_message() });
        }
        let text = answer.body;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| ChatError::BadAnswer { url: url.clone(), reason: e.to_string() })?;
        let content = value["choices"][0]["message"]["content"].as_str().ok_or_else(|| ChatError::BadAnswer {
            url: url.clone(),
            reason: "no choices[0].message.content".to_owned(),
        })?;
        Ok(ChatReply {
            content: content.to_owned(),
            latency,
            cached_tokens: value["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
            prompt_tokens: value["usage"]["prompt_tokens"].as_u64(),
            completion_tokens: value["usage"]["completion_tokens"].as_u64(),
            forced_tokens: value["timings"]["forced_tokens"].as_u64(),
        })
    }
}
