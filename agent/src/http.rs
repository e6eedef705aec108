//! The one HTTP client setup of the daemon's engine clients (speech, intent;
//! local engines and online APIs alike): the TLS provider, the timeout, the
//! bearer token, the OpenAI-shaped error body, and transport errors said so
//! that a timeout reads as one.

use std::time::{Duration, Instant};

/// A reqwest client with `timeout` for every request.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest takes the process-wide TLS provider; installing it twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build()
}

/// What came back from one request: status, body text and the time it took.
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The body as text.
    pub body: String,
    /// From sending to the whole body read.
    pub latency: Duration,
}

impl Answer {
    /// The message of an OpenAI-shaped error body (`{"error":{"message":…}}`), else the body itself.
    pub fn error_message(self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(self.body)
    }
}

/// Sends `request` with `token` as a bearer token when given and reads the
/// whole answer; a transport failure comes back as [`transport_error`]'s words.
pub(crate) async fn exchange(request: reqwest::RequestBuilder, token: Option<&str>) -> Result<Answer, String> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let started = Instant::now();
    let response = request.send().await.map_err(|e| transport_error(&e))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| transport_error(&e))?;
    Ok(Answer { status, body, latency: started.elapsed() })
}

/// A request that failed on the way, said so that a timeout reads as one
/// (reqwest's own message does not name the cause); the online fallback
/// retries timeouts and counts them apart.
pub(crate) fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}
