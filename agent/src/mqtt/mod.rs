//! MQTT: publishing commands and waiting for devices to acknowledge them.
//!
//! [`CommandLink`] is the handle the rest of hearken uses; behind it one task
//! owns all in-flight state (no locks) and a second task drives the rumqttc
//! event loop. See `link` for the delivery rules. Beside it: the broker
//! options, the control topics (push-to-talk, confirmations) and the payloads
//! of the events topic.

pub(crate) mod control;
pub mod events;
pub mod homeassistant;
mod link;
mod options;
mod retained;

pub use link::{CommandLink, Delivery, LateAck, LinkStats, Outcome, DEFAULT_MAX_IN_FLIGHT};
pub use options::BrokerOptions;
pub use retained::{read_retained, write_retained, MAX_RETAINED_BYTES};

/// Errors of the MQTT stage.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker URL cannot be used.
    #[error("broker URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TLS file could not be read.
    #[error("cannot read TLS file {}: {source}", file.display())]
    TlsFile {
        /// The file.
        file: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No connection to the broker within the wait.
    #[error("broker {url} is not reachable: {reason}")]
    Unreachable {
        /// The broker URL.
        url: String,
        /// The last connection error.
        reason: String,
    },
    /// The link's task has stopped (shutdown or crash).
    #[error("the MQTT link has stopped")]
    Stopped,
}
