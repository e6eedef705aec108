//! What several subcommands share: exit statuses, loading a catalog, tokens
//! of servers given by URL, the default whisper model, broker flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use hearken::catalog::Catalog;
use hearken::models;
use hearken::mqtt::BrokerOptions;

/// Exit status when a command was refused before publishing or input was invalid.
pub(crate) const EXIT_INVALID: u8 = 2;
/// Exit status when a command was sent but not acknowledged.
pub(crate) const EXIT_NOT_ACKNOWLEDGED: u8 = 3;

/// Loads a catalog, or prints every problem and gives the "invalid input" exit status.
pub(crate) fn load_catalog(path: &Path) -> Result<Catalog, ExitCode> {
    Catalog::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_INVALID)
    })
}

/// The bearer token for a server given by URL: from `file` when given, else from
/// the environment variable `env` (absent means no token).
pub(crate) fn server_token(file: Option<&Path>, env: &str) -> anyhow::Result<Option<String>> {
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned(),
        )),
        None => Ok(std::env::var(env).ok()),
    }
}

/// The whisper model to use: the one given, else the cached tiny.en (an error naming the fix when absent).
pub(crate) fn default_model(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(model) = explicit {
        return Ok(models::whisper_model_file(&model));
    }
    let cached = models::cache_dir().join(models::WHISPER_TINY_EN_GGML);
    if !cached.exists() {
        bail!("no whisper model at {}; run `hearken models fetch` or pass --model", cached.display());
    }
    Ok(cached)
}

#[derive(Args)]
/// How to reach the broker.
pub(crate) struct BrokerArgs {
    /// Broker URL: mqtt://host[:port] or mqtts://host[:port].
    #[arg(long)]
    pub(crate) broker: String,
    /// Username for the broker.
    #[arg(long, env = "HEARKEN_MQTT_USERNAME")]
    username: Option<String>,
    /// File holding the broker password (or set HEARKEN_MQTT_PASSWORD); never passed on the command line.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl BrokerArgs {
    /// The broker options these flags describe (the password read from its file or the environment).
    pub(crate) fn options(&self) -> anyhow::Result<BrokerOptions> {
        let password = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read password file {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => std::env::var("HEARKEN_MQTT_PASSWORD").ok(),
        };
        Ok(BrokerOptions {
            url: self.broker.clone(),
            username: self.username.clone(),
            password,
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        })
    }
}
