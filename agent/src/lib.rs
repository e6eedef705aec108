//! hearken: voice control for edge boxes.
//!
//! This crate holds everything of the daemon that does not need a native
//! inference engine (those run in their own processes, see DESIGN.md).
//!
//! # Layout
//!
//! - [`audio`]: WAV and raw PCM input, resampling to 16 kHz mono.
//! - [`capture`]: microphone capture (cpal), real-time safe, reopened when lost.
//! - [`vad`]: streaming voice-activity segmentation (WebRTC VAD).
//! - [`catalog`]: the device catalog (TOML), validated as a whole.
//! - [`command`]: the command type and its validation against the catalog.
//! - [`schema`]: the JSON Schema that constrains model output, built from the catalog.
//! - [`protocol`]: per-protocol encoding and acknowledgement matching (pure).
//! - [`models`]: model fetching (PyPI), caching, hashing, CTranslate2 → ggml conversion.
//! - [`mqtt`]: the MQTT link: publish, acknowledgement, outcome, reconnects.
//! - [`engine_http`]: the engines' shared server side: token, loopback, errors.
//! - [`engine_process`]: starting a local engine process and waiting until it is healthy.
//! - [`stt`]: speech-to-text client (OpenAI-compatible) and the local engine process.
//! - [`nlu`]: the intent stage: normalization, fuzzy device linking, the model, validation.
//! - [`second_hearing`]: further, primed transcriptions when the first reading misses something.
//! - [`config`]: the daemon's TOML configuration.
//! - [`host`]: host pressure (CPU load, memory, GPU memory) for the router and metrics.
//! - [`daemon`]: `hearken run`: the stages wired together, supervised engines, systemd.
//! - [`simulator`]: simulated devices with latency and fault injection.
//! - [`audit`]: the hash-chained audit log and its verifier.
//! - [`events`]: payloads for the events topic.
//! - [`bench`]: benchmarks behind `hearken bench`.
//! - [`testbed`]: a throwaway Mosquitto broker for tests and benchmarks.

pub mod audio;
pub mod audit;
pub mod bench;
pub mod capture;
pub mod catalog;
pub mod command;
pub mod config;
pub mod daemon;
pub mod engine_http;
pub mod engine_process;
pub mod engine_request;
pub mod events;
pub mod host;
pub mod models;
pub mod mqtt;
pub mod nlu;
pub mod online;
pub mod protocol;
pub mod rate_limit;
pub mod schema;
pub mod second_hearing;
pub mod simulator;
pub mod stt;
pub mod testbed;
pub mod vad;

/// Current UTC time in RFC 3339, for records and events.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A request that failed on the way, said so that a timeout reads as one
/// (reqwest's own message does not name the cause); the online fallback
/// retries timeouts and counts them apart.
pub fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

/// A duration in milliseconds with microsecond precision, as the JSON contracts report latencies.
pub fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

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
    }
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
