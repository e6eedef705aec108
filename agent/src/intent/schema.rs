//! The JSON Schema that constrains what a language model may answer.
//!
//! Built from the catalog so that constrained decoding can only produce
//! commands the site actually has: one `anyOf` branch per device (and per
//! value-taking action), never independent device and action enums that
//! would allow "unlock the lamp". Validation against the catalog still
//! follows; the schema narrows what the model can say, it does not replace
//! the check.

use serde_json::{json, Value};

use crate::catalog::{Catalog, Device};

/// Builds the model-output schema `{"commands": [command, …]}` for a catalog.
pub fn command_schema(catalog: &Catalog) -> Value {
    let branches: Vec<Value> = catalog.devices.iter().flat_map(|d| device_branches(d, None)).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("hearken commands for site {}", catalog.site),
        "type": "object",
        "properties": {
            "commands": {
                "type": "array",
                "items": { "anyOf": branches }
            }
        },
        "required": ["commands"],
        "additionalProperties": false
    })
}

/// The schema for one utterance: `{"commands": […]}` with one to
/// `max_commands` commands that may only name `devices` (the ones the
/// utterance names and its words do not settle) and only with values the
/// utterance contains (`values`), within each action's range. Whether the
/// utterance is a request at all was decided before the model is asked.
pub fn utterance_schema(devices: &[&Device], values: &[i64], max_commands: usize) -> Value {
    // The action comes first: it is what the model decides, and everything
    // after it is usually forced and never has to be decoded.
    let branches: Vec<Value> =
        devices.iter().flat_map(|d| device_branches(d, Some(values))).map(action_first).collect();
    json!({
        "type": "object",
        "properties": {
            "commands": {
                "type": "array",
                "items": { "anyOf": branches },
                "minItems": 1,
                "maxItems": max_commands.max(1)
            }
        },
        "required": ["commands"],
        "additionalProperties": false
    })
}

/// The same branch with `action` listed (and so generated) before `device`.
fn action_first(mut branch: Value) -> Value {
    if let Some(properties) = branch.get_mut("properties").and_then(Value::as_object_mut) {
        if let Some(device) = properties.shift_remove("device") {
            let value = properties.shift_remove("value");
            properties.insert("device".to_owned(), device);
            if let Some(value) = value {
                properties.insert("value".to_owned(), value);
            }
        }
    }
    branch
}

/// One branch for the device's value-less actions (if any) and one per
/// value-taking action, each with the exact integer range; with `values`,
/// a value-taking action is offered only with those of the values that are
/// in range (and not at all when none is).
fn device_branches(device: &Device, values: Option<&[i64]>) -> Vec<Value> {
    let plain: Vec<&String> = device.actions.iter().filter(|a| device.param(a).is_none()).collect();
    let mut branches = Vec::new();
    if !plain.is_empty() {
        branches.push(json!({
            "type": "object",
            "properties": {
                "device": { "const": device.id },
                "action": { "enum": plain }
            },
            "required": ["device", "action"],
            "additionalProperties": false
        }));
    }
    for action in &device.actions {
        if let Some(range) = device.param(action) {
            let value = match values {
                None => json!({ "type": "integer", "minimum": range.min, "maximum": range.max }),
                Some(values) => {
                    let allowed: Vec<i64> =
                        values.iter().copied().filter(|v| (range.min..=range.max).contains(v)).collect();
                    if allowed.is_empty() {
                        continue;
                    }
                    json!({ "enum": allowed })
                }
            };
            branches.push(json!({
                "type": "object",
                "properties": {
                    "device": { "const": device.id },
                    "action": { "const": action },
                    "value": value
                },
                "required": ["device", "action", "value"],
                "additionalProperties": false
            }));
        }
    }
    branches
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    #[test]
    fn one_branch_per_device_plus_one_per_valued_action() {
        let catalog = Catalog::parse(
            Path::new("t.toml"),
            r#"
site = "home"
[[devices]]
id = "lamp"
name = "lamp"
actions = ["turn_on", "turn_off", "set_brightness"]
[devices.params.set_brightness]
min = 0
max = 100
[[devices]]
id = "door"
name = "door"
actions = ["lock"]
"#,
        )
        .unwrap();
        let schema = command_schema(&catalog);
        let branches = schema["properties"]["commands"]["items"]["anyOf"].as_array().unwrap();
        assert_eq!(branches.len(), 3);
        assert_eq!(branches[0]["properties"]["action"]["enum"], json!(["turn_on", "turn_off"]));
        assert_eq!(branches[1]["properties"]["value"]["maximum"], json!(100));
        assert_eq!(branches[2]["properties"]["device"]["const"], json!("door"));
    }
}
