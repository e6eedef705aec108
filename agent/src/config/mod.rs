//! The daemon's configuration: one TOML file, every field documented, units in
//! the names, defaults that work on a fresh box (`hearken config default`
//! prints them). Unknown fields are errors that name the field, so a typo
//! never silently falls back to a default. Secrets (broker password, engine
//! tokens) come from files or the environment and are never printed.

mod limits;
mod online;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use limits::{LimitsConfig, MAX_COMMANDS_CEILING};
pub use online::{OnlineConfig, OnlineEndpointConfig, Privacy, RetryConfig};

use crate::mqtt::BrokerOptions;

/// Errors of the configuration stage.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {source}", file = file.display())]
    Io {
        /// The config path.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not TOML, an unknown field, or a value of the wrong type (toml names the field and line).
    #[error("{file}: {message}", file = file.display())]
    Syntax {
        /// The config path.
        file: PathBuf,
        /// toml's message, naming the field.
        message: String,
    },
    /// A field's value is not allowed.
    #[error("{file}: {field}: {message}", file = file.display())]
    Invalid {
        /// The config path.
        file: PathBuf,
        /// Dotted field name, e.g. `audio.file`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A secret file could not be read.
    #[error("{field}: cannot read {file}: {source}", file = file.display())]
    Secret {
        /// Dotted field name.
        field: String,
        /// The secret file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Device catalog (TOML): every command is validated against it.
    pub catalog: PathBuf,
    /// The MQTT broker.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// Where audio comes from and how it is cut into utterances.
    #[serde(default)]
    pub audio: AudioConfig,
    /// The speech-to-text engine.
    #[serde(default)]
    pub stt: EngineConfig,
    /// The intent engine.
    #[serde(default)]
    pub intent: EngineConfig,
    /// Supervision of the engines hearken starts itself.
    #[serde(default)]
    pub engines: SupervisionConfig,
    /// Which utterances are meant for hearken.
    #[serde(default)]
    pub activation: ActivationConfig,
    /// Commands whose action is under a device's `confirm`.
    #[serde(default)]
    pub confirmation: ConfirmationConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Stopping.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Handing work to online APIs when the box is busy or an engine is down (off by default).
    #[serde(default)]
    pub online: OnlineConfig,
    /// Bounds on requests and commands (`docs/security.md`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Home Assistant MQTT discovery.
    #[serde(default)]
    pub homeassistant: HomeAssistantConfig,
    /// Following Zigbee2MQTT's device list.
    #[serde(default)]
    pub zigbee2mqtt: Zigbee2mqttConfig,
}

/// Following Zigbee2MQTT: the catalog file is rewritten from its device list
/// (`hearken devices import --z2m`, the overlay applied) whenever it changes,
/// and reloaded.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Zigbee2mqttConfig {
    /// Keep the catalog in step with Zigbee2MQTT (off by default).
    pub follow: bool,
    /// Zigbee2MQTT's base topic.
    pub base_topic: String,
    /// The hand-written overlay (names, aliases, areas, confirm lists).
    pub overlay: Option<PathBuf>,
}

impl Default for Zigbee2mqttConfig {
    fn default() -> Self {
        Zigbee2mqttConfig { follow: false, base_topic: "zigbee2mqtt".to_owned(), overlay: None }
    }
}

/// Home Assistant MQTT discovery of hearken's own entities.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// `true`: publish the discovery configs and keep the states current;
    /// `false`: remove configs an earlier run left; unset: neither.
    pub discovery: Option<bool>,
    /// Home Assistant's discovery prefix.
    pub prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig { discovery: None, prefix: "homeassistant".to_owned() }
    }
}

/// The MQTT broker and its credentials.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: String,
    /// Username, if the broker requires one (or set HEARKEN_MQTT_USERNAME).
    pub username: Option<String>,
    /// File holding the password (or set HEARKEN_MQTT_PASSWORD). Never put the password here.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// How long startup waits for the broker before reporting ready anyway
    /// (commands are `not_sent` until it comes back).
    pub connect_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Where audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioSource {
    /// A microphone (ALSA via cpal).
    Microphone,
    /// A WAV file, then the daemon stops (tests, benchmarks, demos).
    File,
    /// Requests as text, one per line, from `file` (standard input when no
    /// file is set): no VAD, no speech-to-text. For soak tests, benchmarks
    /// and text front-ends; the daemon stops at the end of the input.
    Text,
    /// Raw 16 kHz mono s16le PCM on standard input.
    Stdin,
}

/// Audio input and segmentation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// `microphone`, `file`, `stdin` or `text`.
    pub source: AudioSource,
    /// Microphone name or index (empty: the system default input).
    pub device: String,
    /// WAV file for `source = "file"`; text file for `source = "text"`.
    pub file: Option<PathBuf>,
    /// Feed the file at real time (as a microphone would) rather than as fast as possible.
    pub realtime: bool,
    /// Trailing silence that ends an utterance.
    pub end_silence_ms: u32,
    /// WebRTC VAD aggressiveness, 0 (keeps more) to 3.
    pub aggressiveness: u8,
    /// Longest utterance; longer speech is cut.
    pub max_utterance_ms: u32,
    /// Utterances waiting for the engines; when full, new ones are dropped and counted.
    pub queue_utterances: usize,
    /// The room this microphone is in (an area of the catalog): where "turn on
    /// the light" goes when the words name no place. Empty: unknown.
    pub area: String,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            source: AudioSource::Microphone,
            device: String::new(),
            file: None,
            realtime: false,
            end_silence_ms: 400,
            aggressiveness: 2,
            max_utterance_ms: 10_000,
            queue_utterances: 4,
            area: String::new(),
        }
    }
}

/// One inference engine: started by hearken (no `url`) or a running
/// OpenAI-compatible server (`url`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Base URL of a running server; empty: hearken starts and supervises its own engine.
    pub url: Option<String>,
    /// File holding that server's bearer token (or set HEARKEN_STT_TOKEN / HEARKEN_LLM_TOKEN).
    pub token_file: Option<PathBuf>,
    /// Model file for the local engine (empty: the cached default from `hearken
    /// models fetch`); for speech also a name, `tiny.en` or `base`.
    pub model: Option<PathBuf>,
    /// Speech only: the spoken language, an ISO 639-1 code (`en`, `de`, …) or
    /// `auto` (multilingual models such as `base`; English-only ones hear English).
    pub language: String,
    /// Most inference threads of the local engine (0: all cores; STT and intent run one after the other).
    pub threads: usize,
    /// Each request of the local engine uses the cores other work left idle
    /// over the last second, within `threads` (ggml's spinning thread pool
    /// with a thread per core is 5× slower with one core busy); off: always
    /// `threads`.
    pub adaptive_threads: bool,
    /// Request timeout.
    pub timeout_ms: u64,
    /// Speech only: prime every transcription with the catalog's device names and
    /// aliases (off by default: with whisper tiny.en it makes each transcription
    /// ~3× slower; `retry_with_catalog_prompt` gets its gain for a fraction of the cost).
    pub prompt_from_catalog: bool,
    /// Speech only: when a transcript yields no command, or fewer commands than the
    /// request has clauses, transcribe the utterance again primed with the catalog's
    /// names (and, if that still misses something, with one example request per
    /// device) and use a reading that yields more commands (only those utterances pay
    /// for the slower, primed transcriptions; ignored when `prompt_from_catalog` is on).
    /// Off by default since `vocabulary_from_catalog`: one pass does nearly as well on
    /// natural voices with a 1.6× rather than 5× p95, and heard again a noisy room
    /// gave 4× the false actions (README, Speech).
    pub retry_with_catalog_prompt: bool,
    /// Speech only: every transcription favours the catalog's device names,
    /// aliases and areas while decoding (hearken's engine boosts their tokens
    /// a little; almost free, unlike a prompt). The reading without them is
    /// kept in the report (`free_text`) when they changed a word.
    pub vocabulary_from_catalog: bool,
    /// Run the local engine on the GPU (whisper: `--gpu`; llama: every layer
    /// offloaded). Needs engines built with `--features cuda`; a CPU build
    /// ignores it.
    pub gpu: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            url: None,
            token_file: None,
            model: None,
            language: "en".to_owned(),
            threads: 0,
            adaptive_threads: true,
            timeout_ms: 10_000,
            prompt_from_catalog: false,
            retry_with_catalog_prompt: false,
            vocabulary_from_catalog: true,
            gpu: false,
        }
    }
}

/// Supervision of local engines.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// How long one engine start may take (model load).
    pub startup_timeout_ms: u64,
    /// First restart delay after a crash; doubles up to `restart_backoff_max_ms`.
    pub restart_backoff_min_ms: u64,
    /// Longest restart delay.
    pub restart_backoff_max_ms: u64,
    /// How often a running engine's `/health` is checked.
    pub health_interval_ms: u64,
    /// How long an utterance waits for a restarting engine before it is reported as not handled.
    pub wait_for_engine_ms: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            startup_timeout_ms: 120_000,
            restart_backoff_min_ms: 500,
            restart_backoff_max_ms: 30_000,
            health_interval_ms: 2_000,
            wait_for_engine_ms: 10_000,
        }
    }
}

/// How hearken knows an utterance is meant for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationMode {
    /// Every utterance is interpreted; non-commands yield nothing.
    Always,
    /// Only utterances that start with the wake phrase ("hey hearken, …"), or the
    /// next one after the wake phrase alone.
    WakePhrase,
    /// Only utterances after a message on `hearken/<site>/listen` (push-to-talk).
    Mqtt,
}

/// Activation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivationConfig {
    /// `always`, `wake_phrase` or `mqtt`.
    pub mode: ActivationMode,
    /// The wake phrase (matched on normalized words, tolerant of transcription slips).
    pub wake_phrase: String,
    /// After the wake phrase alone, or an MQTT trigger, how long the next utterance is accepted.
    pub window_ms: u64,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        ActivationConfig { mode: ActivationMode::Always, wake_phrase: "hey hearken".to_owned(), window_ms: 8_000 }
    }
}

/// Confirmation of sensitive actions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfirmationConfig {
    /// How long a command waits for "confirm"/"yes" (spoken, or on `hearken/<site>/confirm`); then it is cancelled.
    pub window_ms: u64,
}

impl Default for ConfirmationConfig {
    fn default() -> Self {
        ConfirmationConfig { window_ms: 10_000 }
    }
}

/// The audit log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The active log file (rotated segments are `FILE.1`, `FILE.2`, …).
    pub path: PathBuf,
    /// Background fsync interval (0: after every record).
    pub fsync_interval_ms: u64,
    /// Rotate after this many bytes (0: never).
    pub max_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { path: PathBuf::from("/var/lib/hearken/audit.log"), fsync_interval_ms: 100, max_bytes: 0 }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` on (empty: off). Keep it on loopback or a management network.
    pub listen: Option<String>,
}

/// Stopping.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM, how long in-flight utterances and commands may take before hearken exits anyway.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_timeout_ms: 5_000 }
    }
}

/// The default config file, documented, as `hearken config default` prints it.
pub const DEFAULT_CONFIG: &str = include_str!("../../../systemd/hearken.toml");

impl Config {
    /// Reads and checks a config file; relative paths in it are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_owned(), source })?;
        let mut config = Config::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and checks config text; `path` is used only in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax { file: path.to_owned(), message: e.to_string() })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| {
            Err(ConfigError::Invalid { file: path.to_owned(), field: field.to_owned(), message: message.to_owned() })
        };
        if !self.broker.url.starts_with("mqtt://") && !self.broker.url.starts_with("mqtts://") {
            return invalid("broker.url", "must start with mqtt:// or mqtts://");
        }
        if self.broker.client_cert.is_some() != self.broker.client_key.is_some() {
            return invalid("broker.client_cert", "client_cert and client_key go together");
        }
        if self.audio.source == AudioSource::File && self.audio.file.is_none() {
            return invalid("audio.file", "source = \"file\" needs a file");
        }
        if self.audio.aggressiveness > 3 {
            return invalid("audio.aggressiveness", "must be 0 to 3");
        }
        if !(100..=5_000).contains(&self.audio.end_silence_ms) {
            return invalid("audio.end_silence_ms", "must be 100 to 5000");
        }
        if !(1_000..=60_000).contains(&self.audio.max_utterance_ms) {
            return invalid("audio.max_utterance_ms", "must be 1000 to 60000");
        }
        if self.audio.queue_utterances == 0 {
            return invalid("audio.queue_utterances", "must be at least 1");
        }
        if self.activation.mode == ActivationMode::WakePhrase
            && crate::intent::normalize::normalize(&self.activation.wake_phrase).is_empty()
        {
            return invalid("activation.wake_phrase", "must have at least one word");
        }
        if self.confirmation.window_ms == 0 {
            return invalid("confirmation.window_ms", "must be above 0");
        }
        if self.engines.restart_backoff_min_ms == 0
            || self.engines.restart_backoff_min_ms > self.engines.restart_backoff_max_ms
        {
            return invalid("engines.restart_backoff_min_ms", "must be above 0 and at most restart_backoff_max_ms");
        }
        let language = &self.stt.language;
        if language != "auto"
            && (!(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_lowercase()))
        {
            return invalid("stt.language", "must be an ISO 639-1 code such as \"en\", or \"auto\"");
        }
        if self.engines.health_interval_ms == 0 {
            return invalid("engines.health_interval_ms", "must be above 0");
        }
        if let Err((field, message)) = self.online.check() {
            return invalid(&field, message);
        }
        if let Err((field, message)) = self.limits.check() {
            return invalid(&field, &message);
        }
        if let Some(listen) = &self.metrics.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return invalid("metrics.listen", "must be host:port, e.g. 127.0.0.1:9464");
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.catalog);
        // A model name ("tiny.en", "base") is not a path.
        if let Some(model) = &mut self.stt.model {
            if crate::models::named_whisper_file(model).is_none() {
                resolve(model);
            }
        }
        resolve(&mut self.audit.path);
        self.online.resolve_paths(base);
        for p in [
            &mut self.audio.file,
            &mut self.broker.password_file,
            &mut self.broker.ca_file,
            &mut self.broker.client_cert,
            &mut self.broker.client_key,
            &mut self.stt.token_file,
            &mut self.intent.token_file,
            &mut self.intent.model,
            &mut self.zigbee2mqtt.overlay,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }

    /// Broker options with the password read from its file or the environment.
    pub fn broker_options(&self) -> Result<BrokerOptions, ConfigError> {
        let password = match &self.broker.password_file {
            Some(file) => Some(read_secret("broker.password_file", file)?),
            None => std::env::var("HEARKEN_MQTT_PASSWORD").ok(),
        };
        Ok(BrokerOptions {
            url: self.broker.url.clone(),
            username: self.broker.username.clone().or_else(|| std::env::var("HEARKEN_MQTT_USERNAME").ok()),
            password,
            ca_file: self.broker.ca_file.clone(),
            client_cert: self.broker.client_cert.clone(),
            client_key: self.broker.client_key.clone(),
        })
    }
}

impl EngineConfig {
    /// The bearer token for a configured server: its file, else the environment variable `env`.
    pub fn token(&self, field: &str, env: &str) -> Result<Option<String>, ConfigError> {
        match &self.token_file {
            Some(file) => Ok(Some(read_secret(field, file)?)),
            None => Ok(std::env::var(env).ok()),
        }
    }

    /// Threads for a local engine: the configured count, else every core.
    pub fn threads_or_all(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The request timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// Reads a secret file, trimming the trailing newline editors add.
fn read_secret(field: &str, file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|source| ConfigError::Secret { field: field.to_owned(), file: file.to_owned(), source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_default_config_parses_and_passes_its_checks() {
        let config = Config::parse(Path::new("hearken.toml"), DEFAULT_CONFIG).unwrap();
        assert_eq!(config.audio.end_silence_ms, 400);
        assert_eq!(config.activation.mode, ActivationMode::Always);
    }

    #[test]
    fn a_minimal_config_takes_every_default() {
        let config = Config::parse(Path::new("c.toml"), "catalog = \"home.toml\"\n").unwrap();
        assert_eq!(config.broker.url, "mqtt://127.0.0.1:1883");
        assert_eq!(config.confirmation.window_ms, 10_000);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e =
            Config::parse(Path::new("c.toml"), "catalog = \"h.toml\"\n[audio]\nend_silense_ms = 300\n").unwrap_err();
        let message = e.to_string();
        assert!(message.contains("end_silense_ms"), "{message}");
        assert!(message.contains("c.toml"), "{message}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("[broker]\nurl = \"http://x\"\n", "broker.url"),
            ("[audio]\nsource = \"file\"\n", "audio.file"),
            ("[audio]\naggressiveness = 7\n", "audio.aggressiveness"),
            ("[activation]\nmode = \"wake_phrase\"\nwake_phrase = \"  ,\"\n", "activation.wake_phrase"),
            ("[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"),
            ("[online]\nmax_concurrent = 0\n", "online.max_concurrent"),
            ("[online]\ncpu_threshold_percent = 0\n", "online.cpu_threshold_percent"),
            ("[online.retry]\nbackoff_base_ms = 500\nbackoff_max_ms = 100\n", "online.retry.backoff_base_ms"),
            ("[online.stt]\nurl = \"ftp://x\"\nmodel = \"m\"\n", "online.stt.url"),
            ("[online.stt]\nurl = \"http://x\"\nmodel = \"m\"\nmax_tokens = 5\n", "online.stt"),
            ("[online.intent]\nurl = \"http://x\"\nmodel = \"m\"\ntemperature = 3.0\n", "online.intent.temperature"),
            (
                "[online.intent]\nurl = \"http://x\"\nmodel = \"m\"\n[online.intent.backup]\nurl = \"http://y\"\nmodel = \"m\"\n\
                 [online.intent.backup.backup]\nurl = \"http://z\"\nmodel = \"m\"\n",
                "online.intent.backup.backup",
            ),
            ("[online]\nprivacy = \"sometimes\"\n", "sometimes"),
        ];
        for (text, field) in cases {
            let e = Config::parse(Path::new("c.toml"), &format!("catalog = \"h.toml\"\n{text}")).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn wrong_types_and_unknown_modes_are_named() {
        let e =
            Config::parse(Path::new("c.toml"), "catalog = \"h.toml\"\n[activation]\nmode = \"clap\"\n").unwrap_err();
        assert!(e.to_string().contains("clap"), "{e}");
        let e = Config::parse(Path::new("c.toml"), "catalog = 3\n").unwrap_err();
        assert!(e.to_string().contains("catalog"), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearken.toml");
        std::fs::write(&path, "catalog = \"home.toml\"\n[audit]\npath = \"audit.log\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.catalog, dir.path().join("home.toml"));
        assert_eq!(config.audit.path, dir.path().join("audit.log"));
    }
}
