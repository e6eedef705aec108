//! The command type and the reasons a command is refused. A leaf: the
//! check against the catalog is `Catalog::check`, which every command passes
//! before it can be published, whoever produced it (a person on the command
//! line, the language model, an online API): the model is never trusted.

use serde::{Deserialize, Serialize};

/// One thing to do to one device (the command JSON of DESIGN.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Catalog device id.
    pub device: String,
    /// One of the device's actions.
    pub action: String,
    /// Present exactly when the action takes a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

/// Why a command was refused before anything was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No device with that id.
    #[error("unknown device '{device}' (not in the catalog)")]
    UnknownDevice {
        /// The id that was asked for.
        device: String,
    },
    /// The device exists but has no such action.
    #[error("device '{device}' has no action '{action}' (allowed: {allowed})")]
    UnknownAction {
        /// The device id.
        device: String,
        /// The action that was asked for.
        action: String,
        /// The device's actions, comma-separated.
        allowed: String,
    },
    /// A value-taking action without a value.
    #[error("action '{action}' of device '{device}' needs a value between {min} and {max}")]
    MissingValue {
        /// The device id.
        device: String,
        /// The action.
        action: String,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A value for an action that takes none.
    #[error("action '{action}' of device '{device}' takes no value, got {value}")]
    UnexpectedValue {
        /// The device id.
        device: String,
        /// The action.
        action: String,
        /// The value that should not be there.
        value: i64,
    },
    /// A value outside the catalog's range.
    #[error("value {value} for action '{action}' of device '{device}' is outside {min}..={max}")]
    OutOfRange {
        /// The device id.
        device: String,
        /// The action.
        action: String,
        /// The value given.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
}
