//! Every command, whoever produced it, is checked against the catalog here
//! before anything is published: the model is never trusted.

use super::command::{Command, CommandError};
use super::{Catalog, Device};

impl Catalog {
    /// Checks a command against the catalog: the device exists, the action is
    /// one of its actions, and a value is present, integer and in range exactly
    /// when the action takes one. Returns the device so callers need not look
    /// it up again.
    pub fn check(&self, command: &Command) -> Result<&Device, CommandError> {
        let device = self
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
        assert!(c.check(&cmd("lamp", "turn_on", None)).is_ok());
        assert!(c.check(&cmd("lamp", "set_brightness", Some(0))).is_ok());
        assert!(c.check(&cmd("lamp", "set_brightness", Some(100))).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_a_named_reason() {
        let c = catalog();
        assert!(matches!(c.check(&cmd("fan", "turn_on", None)), Err(CommandError::UnknownDevice { .. })));
        assert!(matches!(c.check(&cmd("lamp", "unlock", None)), Err(CommandError::UnknownAction { .. })));
        assert!(matches!(c.check(&cmd("lamp", "set_brightness", None)), Err(CommandError::MissingValue { .. })));
        assert!(matches!(c.check(&cmd("lamp", "turn_on", Some(1))), Err(CommandError::UnexpectedValue { .. })));
        assert!(matches!(c.check(&cmd("lamp", "set_brightness", Some(101))), Err(CommandError::OutOfRange { .. })));
        assert!(matches!(c.check(&cmd("lamp", "set_brightness", Some(-1))), Err(CommandError::OutOfRange { .. })));
    }

    #[test]
    fn command_json_rejects_unknown_fields_and_fractional_values() {
        assert!(serde_json::from_str::<Command>(r#"{"device":"lamp","action":"turn_on","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"device":"lamp","action":"x","value":1.5}"#).is_err());
    }
}
