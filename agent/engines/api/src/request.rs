//! What a client sends the engines, parsed and checked before any inference:
//! the chat request of `hearken-llama` and the multipart form of
//! `hearken-whisper`. Here, in the library, so that both engines, the
//! fuzzers and the unit tests share one parser. Every limit is the engine's
//! own setting (its `--max-*` flags) and a request past one is refused with
//! an error that names it.

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::wav::{self as audio, Audio};

/// Default for `hearken-llama --max-body-bytes`: prompts and schemas are text.
pub const CHAT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default for `hearken-llama --max-tokens`: the most a request may ask for.
pub const CHAT_MAX_TOKENS: usize = 1024;
/// Completion length when the request names none: a command list is short.
pub const CHAT_DEFAULT_TOKENS: usize = 256;
/// Default for `hearken-whisper --max-body-bytes`: 30 s of 48 kHz stereo float WAV, with room to spare.
pub const TRANSCRIPTION_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default of `hearken-whisper --max-audio-ms`: two minutes, four of whisper's windows.
pub const TRANSCRIPTION_MAX_AUDIO_MS: u64 = 120_000;

/// A request the engine refuses, with the HTTP status that says why.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Malformed or incomplete.
    #[error("{0}")]
    Bad(String),
    /// Past one of the engine's limits.
    #[error("{0}")]
    TooLarge(String),
}

impl RequestError {
    /// 400 or 413.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Bad(_) => StatusCode::BAD_REQUEST,
            RequestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// The part of OpenAI's chat request `hearken-llama` honours. Sampling is
/// greedy whatever `temperature` says: the answer must be reproducible.
#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Deserialize)]
struct JsonSchemaFormat {
    schema: Value,
}

/// A checked chat request, ready for the generator.
#[derive(Debug)]
pub struct ChatJob {
    /// (role, content), roles being system, user or assistant.
    pub messages: Vec<(String, String)>,
    /// Completion length, 1 to the engine's `--max-tokens`.
    pub max_tokens: usize,
    /// The JSON Schema the completion must follow, if any.
    pub schema: Option<Value>,
}

/// Parses a `/v1/chat/completions` body; `max_tokens` is the engine's ceiling.
pub fn parse_chat(body: &[u8], max_tokens: usize) -> Result<ChatJob, RequestError> {
    let request: ChatRequest =
        serde_json::from_slice(body).map_err(|e| RequestError::Bad(format!("malformed chat request: {e}")))?;
    if request.messages.is_empty() {
        return Err(RequestError::Bad("'messages' must not be empty".to_owned()));
    }
    if let Some(message) = request.messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(RequestError::Bad(format!("unknown role '{}'", message.role)));
    }
    let asked = request.max_completion_tokens.or(request.max_tokens).unwrap_or(CHAT_DEFAULT_TOKENS.min(max_tokens));
    if asked == 0 {
        return Err(RequestError::Bad("max_tokens must be at least 1".to_owned()));
    }
    if asked > max_tokens {
        return Err(RequestError::TooLarge(format!(
            "max_tokens {asked} is past this engine's limit of {max_tokens} (--max-tokens)"
        )));
    }
    let schema = match request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(json!({"type": "object"})),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(json_schema.schema),
    };
    let messages = request.messages.into_iter().map(|m| (m.role, m.content)).collect();
    Ok(ChatJob { messages, max_tokens: asked, schema })
}

/// A checked transcription request, its audio decoded to 16 kHz mono.
#[derive(Debug)]
pub struct TranscriptionJob {
    /// The audio.
    pub audio: Audio,
    /// Text that primes the recognizer.
    pub prompt: Option<String>,
    /// Phrases to favour while decoding (hearken's `vocabulary` field, one
    /// phrase per line; other servers ignore it).
    pub vocabulary: Vec<String>,
    /// Spoken language (default `en`).
    pub language: String,
    /// Answer with plain text rather than JSON.
    pub text_format: bool,
}

/// Parses a `/v1/audio/transcriptions` multipart body (`content_type` is
/// its header, with the boundary; the body at most axum's default 2 MB):
/// what the fuzzers and tests call. The engine reads its request with
/// [`read_transcription`] under its own body limit.
pub async fn parse_transcription(
    content_type: &str,
    body: bytes::Bytes,
    max_audio_ms: u64,
) -> Result<TranscriptionJob, RequestError> {
    let request = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .map_err(|e| RequestError::Bad(format!("malformed request: {e}")))?;
    let multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| RequestError::Bad(format!("not a multipart form: {}", e.body_text())))?;
    read_transcription(multipart, max_audio_ms).await
}

/// Reads a transcription form and decodes its WAV; `max_audio_ms` is the
/// engine's ceiling on the clip's length.
pub async fn read_transcription(mut multipart: Multipart, max_audio_ms: u64) -> Result<TranscriptionJob, RequestError> {
    let (mut file, mut prompt, mut language, mut format) = (None, None, "en".to_owned(), "json".to_owned());
    let mut vocabulary = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, "malformed multipart body")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, &format!("cannot read field {name}")))?;
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match name.as_str() {
            "file" => file = Some(bytes.clone()),
            "prompt" => prompt = Some(text()),
            "vocabulary" => {
                vocabulary = text().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
            }
            "language" => language = text(),
            "response_format" => format = text(),
            _ => {}
        }
    }
    if format != "json" && format != "text" {
        return Err(RequestError::Bad(format!("response_format '{format}' is not supported (json, text)")));
    }
    let file = file.ok_or_else(|| RequestError::Bad("the 'file' field is required".to_owned()))?;
    let audio = audio::decode_wav(&file, "file").map_err(|e| RequestError::Bad(e.to_string()))?;
    if audio.duration_ms() > max_audio_ms {
        return Err(RequestError::TooLarge(format!(
            "audio is {} ms long; this engine takes at most {max_audio_ms} ms per request (--max-audio-ms)",
            audio.duration_ms()
        )));
    }
    Ok(TranscriptionJob { audio, prompt, vocabulary, language, text_format: format == "text" })
}

/// A body cut off by the engine's body limit is 413; anything else is malformed.
fn multipart_error(error: MultipartError, context: &str) -> RequestError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        RequestError::TooLarge(format!("the request body is past this engine's limit (--max-body-bytes): {error}"))
    } else {
        RequestError::Bad(format!("{context}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chat_requests_are_checked_against_the_engines_token_limit() {
        let body = |extra: &str| format!(r#"{{"messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        let job = parse_chat(body("").as_bytes(), 1024).unwrap();
        assert_eq!(job.max_tokens, CHAT_DEFAULT_TOKENS);
        assert_eq!(parse_chat(body(r#","max_tokens":1024"#).as_bytes(), 1024).unwrap().max_tokens, 1024);
        let past = parse_chat(body(r#","max_tokens":1025"#).as_bytes(), 1024).unwrap_err();
        assert_eq!(past.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(past.to_string().contains("--max-tokens"), "{past}");
        // With a ceiling under the default, a request that names nothing gets the ceiling.
        assert_eq!(parse_chat(body("").as_bytes(), 64).unwrap().max_tokens, 64);
        assert_eq!(
            parse_chat(body(r#","max_tokens":0"#).as_bytes(), 64).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        let role = parse_chat(br#"{"messages":[{"role":"tool","content":"x"}]}"#, 64).unwrap_err();
        assert!(role.to_string().contains("unknown role"), "{role}");
        assert!(parse_chat(br#"{"messages":[]}"#, 64).is_err());
        assert!(parse_chat(b"\xff{", 64).is_err());
    }

    fn form(wav: &[u8]) -> (String, bytes::Bytes) {
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".to_vec();
        body.extend_from_slice(wav);
        body.extend_from_slice(b"\r\n--B--\r\n");
        ("multipart/form-data; boundary=B".to_owned(), body.into())
    }

    #[tokio::test]
    async fn a_clip_past_the_audio_limit_is_refused_and_one_at_it_is_taken() {
        let two_seconds = audio::encode_wav16k(&vec![0.0; 32_000]);
        let (content_type, body) = form(&two_seconds);
        let job = parse_transcription(&content_type, body.clone(), 2_000).await.unwrap();
        assert_eq!(job.audio.duration_ms(), 2_000);
        assert!(!job.text_format);
        let refused = parse_transcription(&content_type, body, 1_999).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(refused.to_string().contains("--max-audio-ms"), "{refused}");
        let missing = parse_transcription("multipart/form-data; boundary=B", "--B--\r\n".into(), 2_000).await;
        assert!(missing.unwrap_err().to_string().contains("'file' field is required"));
        assert!(parse_transcription("text/plain", "x".into(), 2_000).await.is_err());
    }
}
