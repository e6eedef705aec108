//! hearken: voice control for edge boxes — the daemon library.
//!
//! This crate holds everything of the daemon that does not need a native
//! inference engine (those run in their own processes, see DESIGN.md). The
//! `hearken` binary (crate `hearken-cli`) is a thin dispatcher over it; test
//! and benchmark harness lives in `hearken-testkit`, never here.
//!
//! # Layout, in pipeline order
//!
//! - [`audio`]: input → utterances: WAV/PCM, microphone capture, VAD, the source task.
//! - [`stt`]: speech-to-text client, catalog prompts, second hearing.
//! - [`intent`]: normalize, link names to devices, resolve by words, ask the
//!   model under a catalog schema, validate.
//! - `policy`: activation (wake phrase, push-to-talk), spoken confirmation answers, rate limits.
//! - [`mqtt`]: the link (publish, acknowledgement, outcome), broker options,
//!   control topics, event payloads.
//! - [`audit`]: the hash-chained audit log, its writer and verifier.
//!
//! Beside the pipeline:
//!
//! - [`catalog`]: the device catalog and `Catalog::check` (every command is
//!   checked before it is published), the command type, the protocols'
//!   encodings, every `hearken/<site>/…` topic.
//! - [`local`]: local engine processes, their supervisor, the lane they share.
//! - [`online`]: online fallback endpoints and the router that picks local or online.
//! - [`daemon`]: `hearken run`: the stages wired together, metrics, systemd.
//! - [`config`], [`models`], [`host`]: configuration, model fetching and
//!   conversion, host pressure.
//!
//! # Channel map of `hearken run`
//!
//! ```text
//! audio::source ──utterances (bounded; live audio drops and counts when full)──▶ daemon::worker
//!   (stt → policy::activation → intent → confirmation)
//! daemon::worker ──dispatch (bounded; backpressure)──▶ daemon::dispatch
//!   (rate limits → mqtt::CommandLink → outcomes, audit, events, late acknowledgements)
//! mqtt::control ──control (push-to-talk, confirmations)──▶ daemon::worker
//! worker, dispatch ──reports──▶ stdout (one JSON line per utterance)
//! local::supervisor ──endpoint (watch)──▶ daemon::worker
//! ```
//!
//! Only the source hears the shutdown signal; the other stages drain what is
//! already in their channels.

pub mod audio;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod host;
mod http;
pub mod intent;
pub mod local;
pub mod models;
pub mod mqtt;
pub mod online;
mod policy;
pub mod stt;

pub use hearken_engine_api::{init_logging, shutdown_signal};

/// Current UTC time in RFC 3339, for records and events.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A duration in milliseconds with microsecond precision, as the JSON contracts report latencies.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}
