//! A `hearken-llama` process that hearken starts itself (the CLI's one-shot
//! commands and the tests; the daemon supervises its engines).

use std::path::Path;
use std::time::Duration;

use super::process::EngineProcess;
use crate::intent::{ChatClient, ChatError};

/// A `hearken-llama` process started by hearken, killed on drop.
pub struct LlamaProcess {
    engine: EngineProcess,
}

impl LlamaProcess {
    /// Starts `hearken-llama` with `model` on a free loopback port with a
    /// fresh token, and waits until the model is loaded.
    pub async fn start(model: &Path, threads: usize) -> Result<LlamaProcess, ChatError> {
        let args = vec!["--model".to_owned(), model.display().to_string(), "--threads".to_owned(), threads.to_string()];
        let engine = EngineProcess::start("hearken-llama", &args, Duration::from_secs(120)).await?;
        Ok(LlamaProcess { engine })
    }

    /// A client for this engine.
    pub fn client(&self, timeout: Duration) -> Result<ChatClient, ChatError> {
        ChatClient::new(&self.engine.url, Some(self.engine.token.clone()), "local", timeout)
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
