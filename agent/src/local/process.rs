//! Starting a local inference engine (`hearken-whisper`, `hearken-llama`) as
//! a child process: a fresh random token, a free loopback port, the first
//! stdout line that says where it listens, and `/health` before anyone uses
//! it. The process is killed when the handle is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Errors while starting an engine process.
#[derive(Debug, thiserror::Error)]
pub enum EngineProcessError {
    /// The process could not be started or did not become healthy.
    #[error("cannot start {binary}: {reason}")]
    Spawn {
        /// The engine binary.
        binary: String,
        /// Why.
        reason: String,
    },
}

/// Where the engine binaries are: `$HEARKEN_ENGINE_DIR`, else next to the running executable.
pub fn engine_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("HEARKEN_ENGINE_DIR") {
        return PathBuf::from(dir).join(name);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A running engine started by hearken, killed on drop.
pub struct EngineProcess {
    child: tokio::process::Child,
    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The bearer token it requires.
    pub token: String,
}

impl EngineProcess {
    /// Starts the engine binary `name` with `args` plus `--listen 127.0.0.1:0`
    /// and a fresh token, and waits (up to `startup`) until it is listening
    /// and `/health` answers.
    pub async fn start(name: &str, args: &[String], startup: Duration) -> Result<EngineProcess, EngineProcessError> {
        let binary = engine_binary(name);
        let spawn_error = |reason: String| EngineProcessError::Spawn { binary: binary.display().to_string(), reason };
        let token = hex::encode(rand::random::<[u8; 24]>());
        let mut child = tokio::process::Command::new(&binary)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("HEARKEN_ENGINE_TOKEN", &token)
            .env(hearken_engine_api::PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(e.to_string()))?;
        let stdout = child.stdout.take().ok_or_else(|| spawn_error("no stdout".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(startup, lines.next_line())
            .await
            .map_err(|_| spawn_error(format!("did not start within {} s", startup.as_secs())))?
            .map_err(|e| spawn_error(e.to_string()))?
            .ok_or_else(|| spawn_error("exited before listening (see its messages above)".to_owned()))?;
        let ready: serde_json::Value =
            serde_json::from_str(&first).map_err(|e| spawn_error(format!("{e}: {first}")))?;
        let address =
            ready["listening"].as_str().ok_or_else(|| spawn_error(format!("unexpected first line {first}")))?;
        let url = format!("http://{address}");
        // reqwest takes the process-wide TLS provider; installing it twice is harmless.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let health = reqwest::Client::new()
            .get(format!("{url}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| spawn_error(format!("health check: {e}")))?;
        if !health.status().is_success() {
            return Err(spawn_error(format!("health check answered {}", health.status())));
        }
        Ok(EngineProcess { child, url, token })
    }

    /// The process id, for tests and supervision.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the process exits and says how (for supervision logs).
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        }
    }
}
