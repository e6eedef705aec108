//! The local engines: `hearken-whisper` and `hearken-llama` as child
//! processes (one per native engine, see DESIGN.md), started on loopback
//! with a fresh token, supervised and restarted by the daemon, and shared by
//! utterances through one lane.

mod lane;
mod llama;
pub(crate) mod process;
pub(crate) mod supervisor;
mod whisper;

pub use lane::{LocalLane, Turn};
pub use llama::LlamaProcess;
pub use process::{engine_binary, EngineProcess, EngineProcessError};
pub use whisper::WhisperProcess;
