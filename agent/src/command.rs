//! Device commands and their validation against the catalog.
//!
//! Every command, whoever produced it (a person on the command line, the
//! language model, an online API), passes [`validate`] before it can be
//! published: the model is never trusted.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Device};

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

/// Checks a command against the catalog: the device exists, the action is
/// one of its actions, and a value is present, integer and in range exactly
/// when the action takes one. Returns the device so callers need not look
/// it up again.
pub fn validate<'c>(catalog: &'c Catalog, command: &Command) -> Result<&'c Device, CommandError> {
    let device = catalog
        .device(&command.device)
        .ok_or_else(|| CommandError::UnknownDevice { device: command.device.clone() })?;
    if !device.has_action(&command.action) {
        return Err(CommandError::UnknownAction {
            device: device.id.clone(),
            action: command.action.clone(),
            allowed: device.actions.join(", "),
        });
    }
    match (device.param(&command.action), command.value) {
        (None, None) => Ok(device),
        (None, Some(value)) => {
            Err(CommandError::UnexpectedValue { device: device.id.clone(), action: command.action.clone(), value })
        }
        (Some(range), None) => Err(CommandError::MissingValue {
            device: device.id.clone(),
            action: command.action.clone(),
            min: range.min,
            max: range.max,
        }),
        (Some(range), Some(value)) if value < range.min || value > range.max => Err(CommandError::OutOfRange {
            device: device.id.clone(),
            action: command.action.clone(),
            value,
            min: range.min,
            max: range.max,
        }),
        (Some(_), Some(_)) => Ok(device),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        Catalog::parse(
            Path::new("t.toml"),
            r#"
site = "home"
[[devices]]
id = "lamp"
name = "lamp"
actions = ["turn_on", "set_brightness"]
[devices.params.set_brightness]
min = 0
max = 100
"#,
        )
        .unwrap()
    }

    fn cmd(device: &str, action: &str, value: Option<i64>) -> Command {
        Command { device: device.into(), action: action.into(), value }
    }

    #[test]
    fn accepts_exactly_what_the_catalog_allows() {
        let c = catalog();
        assert!(validate(&c, &cmd("lamp", "turn_on", None)).is_ok());
        assert!(validate(&c, &cmd("lamp", "set_brightness", Some(0))).is_ok());
        assert!(validate(&c, &cmd("lamp", "set_brightness", Some(100))).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_a_named_reason() {
        let c = catalog();
        assert!(matches!(validate(&c, &cmd("fan", "turn_on", None)), Err(CommandError::UnknownDevice { .. })));
        assert!(matches!(validate(&c, &cmd("lamp", "unlock", None)), Err(CommandError::UnknownAction { .. })));
        assert!(matches!(validate(&c, &cmd("lamp", "set_brightness", None)), Err(CommandError::MissingValue { .. })));
        assert!(matches!(validate(&c, &cmd("lamp", "turn_on", Some(1))), Err(CommandError::UnexpectedValue { .. })));
        assert!(matches!(
            validate(&c, &cmd("lamp", "set_brightness", Some(101))),
            Err(CommandError::OutOfRange { .. })
        ));
        assert!(matches!(validate(&c, &cmd("lamp", "set_brightness", Some(-1))), Err(CommandError::OutOfRange { .. })));
    }

    #[test]
    fn command_json_rejects_unknown_fields_and_fractional_values() {
        assert!(serde_json::from_str::<Command>(r#"{"device":"lamp","action":"turn_on","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"device":"lamp","action":"x","value":1.5}"#).is_err());
    }
}
