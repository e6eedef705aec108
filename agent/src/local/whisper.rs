//! A `hearken-whisper` process that hearken starts itself (the CLI's
//! one-shot commands and the tests; the daemon supervises its engines).

use std::path::Path;
use std::time::Duration;

use super::process::EngineProcess;
use crate::stt::{SttClient, SttError};

/// A `hearken-whisper` process started by hearken, killed on drop.
pub struct WhisperProcess {
    engine: EngineProcess,
}

impl WhisperProcess {
    /// Starts `hearken-whisper` on a free loopback port with a fresh random
    /// token and waits until it is healthy (model loaded).
    pub async fn start(model: &Path, threads: usize) -> Result<WhisperProcess, SttError> {
        let args = vec!["--model".to_owned(), model.display().to_string(), "--threads".to_owned(), threads.to_string()];
        let engine = EngineProcess::start("hearken-whisper", &args, Duration::from_secs(60)).await?;
        Ok(WhisperProcess { engine })
    }

    /// A client for this engine.
    pub fn client(&self, timeout: Duration) -> Result<SttClient, SttError> {
        SttClient::new(&self.engine.url, Some(self.engine.token.clone()), timeout)
    }

    /// The process id, for tests and supervision.
    pub fn pid(&self) -> Option<u32> {
        self.engine.pid()
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.engine.url
    }

    /// The bearer token it requires.
    pub fn token(&self) -> &str {
        &self.engine.token
    }
}
