//! What hearken's inference engines share, and nothing more: the server side
//! of their OpenAI-compatible HTTP API (bearer token, loopback-only
//! listening, error bodies, `/stats`, one inference at a time), the parsers
//! of what a client sends them, and the WAV codec that both the whisper
//! engine and the daemon use. The engines depend on this crate only, not on
//! the daemon library (no MQTT, no microphone, no VAD in an engine binary).
//!
//! # Layout
//!
//! - [`cores`]: how many threads a request may use beside other work.
//! - [`wav`]: WAV and raw PCM decoding, resampling to 16 kHz mono, and the
//!   16 kHz WAV the daemon uploads.
//! - [`request`]: the chat request and the multipart transcription form,
//!   checked against the engine's limits before any inference.
//! - [`http`]: token, loopback, errors, turns, serving.
//! - [`simulation`]: the remote-API stand-in of tests and benchmarks (only
//!   with the `simulation` feature).

pub mod cores;
pub mod http;
pub mod request;
pub mod simulation;
pub mod wav;

/// Resolves on SIGINT or SIGTERM: the one shutdown signal every hearken
/// process (the CLI's long-running commands and the engines) waits for.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = parent_gone() => {
            tracing::warn!("the process that started this engine is gone; stopping");
        }
    }
}

/// The environment variable in which a supervisor names its own pid, so that
/// an engine it started stops when it dies, even by SIGKILL (which no
/// supervisor can clean up after), instead of holding its model and cores.
pub const PARENT_ENV: &str = "HEARKEN_ENGINE_PARENT";

/// Resolves when the engine's parent is no longer the supervisor named in
/// [`PARENT_ENV`] (it died and the engine was re-parented); never without
/// the variable, so an engine started by hand runs until it is stopped.
async fn parent_gone() {
    let Some(supervisor) = supervisor() else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    while std::os::unix::process::parent_id() == supervisor {
        tick.tick().await;
    }
}

/// The pid of the supervisor named in [`PARENT_ENV`], if any.
pub(crate) fn supervisor() -> Option<u32> {
    std::env::var(PARENT_ENV).ok().and_then(|pid| pid.parse().ok())
}

/// Logs to stderr, filtered by `HEARKEN_LOG` (default `warn`), so stdout
/// stays machine-readable JSON lines in every hearken binary.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARKEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}
