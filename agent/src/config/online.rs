//! `[online]`: when and how the daemon hands an utterance's speech or intent
//! stage to an online OpenAI-compatible API (see `docs/online.md`). Off
//! unless endpoints are configured *and* the privacy policy lets data out:
//! the default policy is `never`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{read_secret, ConfigError};

/// What may leave the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Nothing: every stage stays local; overload queues (and is reported).
    Never,
    /// Transcripts may go online; audio stays on the box.
    Text,
    /// Audio and transcripts may go online.
    Any,
}

/// The online fallback.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// What may leave the box for this site.
    pub privacy: Privacy,
    /// Per device id: a stricter policy for utterances that name it (`never`
    /// keeps their intent stage local even under load). A device cannot loosen the site's policy.
    pub devices: BTreeMap<String, Privacy>,
    /// End of speech → commands decided: work that the local engines would
    /// finish later than this (queue × measured service time) goes online.
    pub budget_ms: u64,
    /// End of speech → no online request is sent after this, and one in flight is abandoned
    /// (the utterance then falls back to the local engines).
    pub deadline_ms: u64,
    /// Utterances handled at once (one at a time on the local engines, the rest online).
    pub max_concurrent: usize,
    /// One-minute load per core, percent, at or above which work goes online.
    pub cpu_threshold_percent: f64,
    /// Memory in use, percent, at or above which work goes online.
    pub memory_threshold_percent: f64,
    /// GPU memory in use, percent, at or above which work goes online (engines on a GPU).
    pub gpu_memory_threshold_percent: f64,
    /// Retries, backoff and the circuit breaker.
    pub retry: RetryConfig,
    /// The online speech-to-text API (`/v1/audio/transcriptions`).
    pub stt: Option<OnlineEndpointConfig>,
    /// The online intent API (`/v1/chat/completions` with a JSON Schema).
    pub intent: Option<OnlineEndpointConfig>,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            privacy: Privacy::Never,
            devices: BTreeMap::new(),
            budget_ms: 400,
            deadline_ms: 2_000,
            max_concurrent: 8,
            cpu_threshold_percent: 85.0,
            memory_threshold_percent: 90.0,
            gpu_memory_threshold_percent: 90.0,
            retry: RetryConfig::default(),
            stt: None,
            intent: None,
        }
    }
}

/// How a failing online request is tried again.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Try once more at once after a transient failure (timeout, connection, 429, 5xx).
    pub immediate: bool,
    /// Then this many retries after exponential backoff with full jitter, inside the deadline.
    pub backoff_retries: u32,
    /// First backoff ceiling; doubles per retry.
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling.
    pub backoff_max_ms: u64,
    /// Failures in a row that open an endpoint's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips its endpoint before one probe request.
    pub breaker_open_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            immediate: true,
            backoff_retries: 2,
            backoff_base_ms: 50,
            backoff_max_ms: 400,
            breaker_failures: 3,
            breaker_open_ms: 10_000,
        }
    }
}

/// One online API endpoint, and optionally its backup.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineEndpointConfig {
    /// Base URL, e.g. `https://api.openai.com` (the API path is appended).
    pub url: String,
    /// Model name sent in requests.
    pub model: String,
    /// File holding the API key. Never put the key in this file.
    pub api_key_file: Option<PathBuf>,
    /// Environment variable holding the API key (when there is no `api_key_file`).
    pub api_key_env: Option<String>,
    /// Longest one request may take (the utterance's deadline may cut it shorter).
    #[serde(default = "default_online_timeout_ms")]
    pub timeout_ms: u64,
    /// Intent only: `max_tokens` sent instead of the local engine's per-request value.
    pub max_tokens: Option<u32>,
    /// Intent only: sampling temperature (default 0; the local engine is always greedy).
    pub temperature: Option<f64>,
    /// Intent only: `json_schema.strict` (default true, as for the local engine).
    pub strict: Option<bool>,
    /// Where to go when this endpoint keeps failing.
    pub backup: Option<Box<OnlineEndpointConfig>>,
}

fn default_online_timeout_ms() -> u64 {
    2_000
}

impl OnlineEndpointConfig {
    /// An endpoint at `url` naming `model`, with no API key, the default
    /// timeout, the default parameters and no backup (set the rest as needed).
    pub fn new(url: &str, model: &str) -> OnlineEndpointConfig {
        OnlineEndpointConfig {
            url: url.to_owned(),
            model: model.to_owned(),
            api_key_file: None,
            api_key_env: None,
            timeout_ms: default_online_timeout_ms(),
            max_tokens: None,
            temperature: None,
            strict: None,
            backup: None,
        }
    }

    /// The API key, from the file or the environment variable; `None` when neither is set.
    pub fn api_key(&self, field: &str) -> Result<Option<String>, ConfigError> {
        match (&self.api_key_file, &self.api_key_env) {
            (Some(file), _) => Ok(Some(read_secret(&format!("{field}.api_key_file"), file)?)),
            (None, Some(variable)) => Ok(std::env::var(variable).ok()),
            (None, None) => Ok(None),
        }
    }

    fn check(&self, field: &str, intent: bool, backup: bool) -> Result<(), (String, &'static str)> {
        let at = |name: &str| format!("{field}.{name}");
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err((at("url"), "must start with http:// or https://"));
        }
        if self.model.trim().is_empty() {
            return Err((at("model"), "must not be empty"));
        }
        if self.timeout_ms == 0 {
            return Err((at("timeout_ms"), "must be above 0"));
        }
        if !intent && (self.max_tokens.is_some() || self.temperature.is_some() || self.strict.is_some()) {
            return Err((field.to_owned(), "max_tokens, temperature and strict apply to online.intent only"));
        }
        if self.max_tokens == Some(0) {
            return Err((at("max_tokens"), "must be above 0"));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err((at("temperature"), "must be 0 to 2"));
        }
        match &self.backup {
            Some(_) if backup => Err((at("backup"), "a backup has no backup of its own")),
            Some(b) => b.check(&at("backup"), intent, true),
            None => Ok(()),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(file) = &mut self.api_key_file {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if let Some(backup) = &mut self.backup {
            backup.resolve_paths(base);
        }
    }
}

impl OnlineConfig {
    /// Whether any online endpoint is configured (the privacy policy then
    /// decides, per utterance, what may use it; under `never` nothing does).
    pub fn configured(&self) -> bool {
        self.stt.is_some() || self.intent.is_some()
    }

    /// The values out of range, as (dotted field, message).
    pub(super) fn check(&self) -> Result<(), (String, &'static str)> {
        let field = |name: &str| format!("online.{name}");
        if self.max_concurrent == 0 {
            return Err((field("max_concurrent"), "must be at least 1"));
        }
        if self.deadline_ms == 0 {
            return Err((field("deadline_ms"), "must be above 0"));
        }
        for (name, value) in [
            ("cpu_threshold_percent", self.cpu_threshold_percent),
            ("memory_threshold_percent", self.memory_threshold_percent),
            ("gpu_memory_threshold_percent", self.gpu_memory_threshold_percent),
        ] {
            if !(value > 0.0 && value <= 10_000.0) {
                return Err((field(name), "must be above 0 (percent; above 100 turns the signal off)"));
            }
        }
        let retry = &self.retry;
        if retry.backoff_base_ms == 0 || retry.backoff_base_ms > retry.backoff_max_ms {
            return Err((field("retry.backoff_base_ms"), "must be above 0 and at most backoff_max_ms"));
        }
        if retry.breaker_failures == 0 {
            return Err((field("retry.breaker_failures"), "must be at least 1"));
        }
        if let Some(stt) = &self.stt {
            stt.check(&field("stt"), false, false)?;
        }
        if let Some(intent) = &self.intent {
            intent.check(&field("intent"), true, false)?;
        }
        Ok(())
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for endpoint in [&mut self.stt, &mut self.intent].into_iter().flatten() {
            endpoint.resolve_paths(base);
        }
    }
}
