//! `[limits]`: the bounds that keep one runaway input (an endless transcript,
//! a model that lists every device, a loop that keeps unlocking a door, a
//! broker that stops acknowledging) from becoming a flood of commands. Each
//! is checked at one place and refused with an error that names the limit.
//! See `docs/security.md`.

use serde::{Deserialize, Serialize};

/// The most any utterance may ask for, whatever the config says: the
/// schema's `maxItems` and the reply parser's bound.
pub const MAX_COMMANDS_CEILING: usize = 32;

/// Limits on requests and commands.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest request in characters (a transcript, or a line of the text
    /// source); a longer one is refused whole, never cut.
    pub max_request_chars: usize,
    /// Most commands one utterance may yield; an interpretation with more is refused whole.
    pub max_commands: usize,
    /// Commands one device may be sent per minute (sliding window); past it a
    /// command is not sent. 0: no limit.
    pub device_commands_per_minute: u32,
    /// Confirm-class commands (actions under a device's `confirm`) sent per
    /// minute, all devices together; past it a command is not sent. 0: no limit.
    pub confirm_commands_per_minute: u32,
    /// Commands awaiting their outcome at once (those waiting for a broker
    /// slot included); past it a command is not sent.
    pub mqtt_in_flight: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_chars: 500,
            max_commands: 8,
            device_commands_per_minute: 60,
            confirm_commands_per_minute: 6,
            mqtt_in_flight: crate::mqtt::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl LimitsConfig {
    /// The first field out of range, as (dotted name, message).
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let field = |name: &str, message: String| Err((format!("limits.{name}"), message));
        if !(1..=100_000).contains(&self.max_request_chars) {
            return field("max_request_chars", "must be 1 to 100000".to_owned());
        }
        if !(1..=MAX_COMMANDS_CEILING).contains(&self.max_commands) {
            return field("max_commands", format!("must be 1 to {MAX_COMMANDS_CEILING}"));
        }
        if !(1..=65_535).contains(&self.mqtt_in_flight) {
            return field("mqtt_in_flight", "must be 1 to 65535".to_owned());
        }
        Ok(())
    }
}
