//! Speech-to-text over the OpenAI-compatible `/v1/audio/transcriptions`
//! API: the client for hearken's own engine and for any other server that
//! speaks it, the recognizer prompts built from the catalog, and the second
//! hearing ([`hear_until_complete`]) when the first reading misses something.

use std::time::Duration;

use crate::audio;

pub mod free_reading;
mod second_hearing;

pub use second_hearing::{hear_until_complete, prompts, Rehearing};

/// Errors of the speech-to-text stage.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The server could not be reached or did not answer in time.
    #[error("speech engine {url}: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("speech engine {url} answered {status}: {message}")]
    Status {
        /// The server.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer is not the expected JSON.
    #[error("speech engine {url} sent an unreadable answer: {reason}")]
    BadAnswer {
        /// The server.
        url: String,
        /// Why it is unreadable.
        reason: String,
    },
    /// The answer is JSON, but without the transcript where the API puts it.
    #[error("speech engine {url} sent an answer without a string \"text\"")]
    OffSchema {
        /// The server.
        url: String,
    },
    /// The engine process could not be started.
    #[error(transparent)]
    Spawn(#[from] crate::local::EngineProcessError),
}

/// The speech engine's initial prompt for a catalog: device names and
/// aliases, as a sentence (whisper reads the prompt as preceding text).
/// Capped so that large catalogs stay well inside whisper's prompt window.
pub fn catalog_prompt(catalog: &crate::catalog::Catalog) -> String {
    let mut names: Vec<&str> = Vec::new();
    for device in &catalog.devices {
        for name in std::iter::once(&device.name).chain(&device.aliases) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let mut prompt = join_capped(names.into_iter().map(str::to_owned), ", ");
    prompt.push('.');
    prompt
}

/// The second prompt for a catalog: one example request per device ("Turn
/// on the living room lamp. Lock the front door lock."), worded with its first
/// action that takes no value; capped like [`catalog_prompt`]. Primed this way
/// whisper hears some utterances that the names alone do not recover.
pub fn catalog_sentences(catalog: &crate::catalog::Catalog) -> String {
    let sentences = catalog.devices.iter().filter_map(|device| {
        let action = device.actions.iter().find(|a| !a.starts_with("set_")).or(device.actions.first())?;
        let mut verb = action.replace('_', " ");
        if let Some(first) = verb.get(..1) {
            verb = first.to_uppercase() + &verb[1..];
        }
        Some(format!("{verb} the {}.", device.name))
    });
    join_capped(sentences, " ")
}

/// The phrases a transcription of this site should favour while decoding
/// (hearken's engine boosts them token by token; see the whisper engine's
/// `vocabulary` module): every device name and alias, every area name, and
/// the words of the devices' actions ("turn on", "unlock", "volume down",
/// "brightness" for `set_brightness`). Unlike a prompt, they cost the
/// decoder almost nothing.
pub fn catalog_vocabulary(catalog: &crate::catalog::Catalog) -> Vec<String> {
    let mut phrases: Vec<String> = Vec::new();
    let names = catalog.devices.iter().flat_map(|d| std::iter::once(&d.name).chain(&d.aliases));
    let actions: Vec<String> = catalog
        .devices
        .iter()
        .flat_map(|d| &d.actions)
        .map(|a| a.strip_prefix("set_").unwrap_or(a).to_owned())
        .collect();
    for phrase in names.chain(catalog.areas.iter().map(|a| &a.name)).chain(&actions) {
        let phrase = phrase.replace('_', " ");
        if !phrase.trim().is_empty() && !phrases.contains(&phrase) {
            phrases.push(phrase);
        }
    }
    phrases
}

/// What a transcription is told beforehand.
#[derive(Debug, Clone, Copy, Default)]
pub struct Priming<'a> {
    /// Preceding text (whisper's initial prompt; OpenAI's `prompt`).
    pub prompt: Option<&'a str>,
    /// Phrases to favour while decoding (hearken's `vocabulary` field; other servers ignore it).
    pub vocabulary: &'a [String],
}

impl<'a> Priming<'a> {
    /// Nothing: the recognizer hears the audio alone.
    pub const NONE: Priming<'static> = Priming { prompt: None, vocabulary: &[] };

    /// Only a prompt.
    pub fn prompt(prompt: Option<&'a str>) -> Priming<'a> {
        Priming { prompt, vocabulary: &[] }
    }
}

/// Longest prompt text: well inside whisper's prompt window (224 tokens).
const PROMPT_CAP_BYTES: usize = 400;

/// Joins `parts` with `separator`, stopping before the part that would take
/// the text past [`PROMPT_CAP_BYTES`].
fn join_capped(parts: impl Iterator<Item = String>, separator: &str) -> String {
    let mut text = String::new();
    for part in parts {
        if text.len() + part.len() > PROMPT_CAP_BYTES {
            break;
        }
        if !text.is_empty() {
            text.push_str(separator);
        }
        text.push_str(&part);
    }
    text
}

/// One transcription.
#[derive(Debug, Clone)]
pub struct SttResult {
    /// The transcript.
    pub text: String,
    /// Request → answer, as the client saw it.
    pub latency: Duration,
    /// The reading without the favoured vocabulary, when it differs (only
    /// hearken's engine says).
    pub free_text: Option<String>,
}

/// A client for one OpenAI-compatible transcription endpoint.
#[derive(Clone)]
pub struct SttClient {
    http: reqwest::Client,
    base_url: String,
    token: Option<String>,
    model: String,
    language: String,
}

impl SttClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8081`), sending
    /// `token` as a bearer token when given.
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<SttClient, SttError> {
        let http = crate::http::client(timeout)
            .map_err(|e| SttError::Unreachable { url: base_url.to_owned(), reason: e.to_string() })?;
        Ok(SttClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            model: "whisper-1".to_owned(),
            language: "en".to_owned(),
        })
    }

    /// The same client naming `model` in requests (an online API's model; hearken's engine ignores it).
    pub fn with_model(mut self, model: &str) -> SttClient {
        self.model = model.to_owned();
        self
    }

    /// The same client naming `language` in requests (`stt.language`; `auto`: the model detects it).
    pub fn with_language(mut self, language: &str) -> SttClient {
        self.language = language.to_owned();
        self
    }

    /// Transcribes 16 kHz mono samples, primed with `priming`.
    pub async fn transcribe(&self, samples: &[f32], priming: Priming<'_>) -> Result<SttResult, SttError> {
        let url = format!("{}/v1/audio/transcriptions", self.base_url);
        let wav = audio::encode_wav16k(samples);
        let part = reqwest::multipart::Part::bytes(wav)
            .file_name("audio.wav")
            .mime_str("audio/wav")
            .map_err(|e| SttError::BadAnswer { url: url.clone(), reason: e.to_string() })?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.model.clone())
            .text("language", self.language.clone())
            .text("response_format", "json");
        if let Some(prompt) = priming.prompt {
            form = form.text("prompt", prompt.to_owned());
        }
        if !priming.vocabulary.is_empty() {
            form = form.text("vocabulary", priming.vocabulary.join("\n"));
        }
        let request = self.http.post(&url).multipart(form);
        let answer = crate::http::exchange(request, self.token.as_deref())
            .await
            .map_err(|reason| SttError::Unreachable { url: url.clone(), reason })?;
        let latency = answer.latency;
        if !answer.status.is_success() {
            let status = answer.status.as_u16();
            return Err(SttError::Status { url, status, message: answer.error_message() });
        }
        let body = answer.body;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| SttError::BadAnswer { url: url.clone(), reason: e.to_string() })?;
        let text = value["text"].as_str().ok_or_else(|| SttError::OffSchema { url: url.clone() })?;
        let free_text = value["free_text"].as_str().map(|t| t.trim().to_owned());
        Ok(SttResult { text: text.trim().to_owned(), latency, free_text })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn catalog_prompts_name_every_device_within_the_cap() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/home.toml");
        let catalog = crate::catalog::Catalog::load(&path).unwrap();
        let names = catalog_prompt(&catalog);
        assert!(names.starts_with("living room lamp, lamp, reading lamp, kitchen light"), "{names}");
        let sentences = catalog_sentences(&catalog);
        assert!(sentences.starts_with("Turn on the living room lamp. Turn on the kitchen light."), "{sentences}");
        assert!(sentences.contains("Lock the front door lock."), "{sentences}");
        assert!(sentences.contains("Start the robot vacuum."), "{sentences}");
        assert!(names.len() <= 401 && sentences.len() <= 400);
    }
}
