//! The JSON Schemas in `schemas/` against the examples and what hearken really produces.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use hearken::audit::{AuditLog, AuditOptions};
use hearken::catalog::protocol::{AckStatus, HearkenAck};
use hearken::catalog::Catalog;
use hearken::catalog::Command;
use hearken::intent as schema;
use hearken::mqtt::events;
use hearken::mqtt::{Delivery, LateAck, Outcome};
use hearken_tests::repo_file;
use serde_json::{json, Value};

fn load_schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_file(&format!("schemas/{name}"))).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value) {
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{instance}\n{errors:?}");
}

fn catalog_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn example_catalogs_match_the_catalog_schema() {
    let validator = load_schema("catalog.schema.json");
    for name in ["devices/home.toml", "devices/factory.toml", "devices/office.toml"] {
        assert_valid(&validator, &catalog_json(&repo_file(name)));
    }
    assert!(!validator.is_valid(&json!({"site": "Bad Site", "devices": []})));
    assert!(!validator
        .is_valid(&json!({"site": "s", "devices": [{"id": "a", "name": "a", "actions": ["x"], "protocol": "knx"}]})));
}

#[test]
fn generated_command_schema_admits_exactly_catalog_commands() {
    let catalog = Catalog::load(&repo_file("devices/home.toml")).unwrap();
    let generated = schema::command_schema(&catalog);
    let validator = jsonschema::validator_for(&generated).unwrap();
    let commands = |c: Value| json!({ "commands": c });

    assert_valid(&validator, &commands(json!([])));
    assert_valid(
        &validator,
        &commands(json!([
            {"device": "kitchen_light", "action": "turn_off"},
            {"device": "ceiling_fan", "action": "set_speed", "value": 3},
            {"device": "thermostat", "action": "set_temperature", "value": 21}
        ])),
    );
    for bad in [
        json!([{"device": "kitchen_light", "action": "unlock"}]),
        json!([{"device": "front_door_lock", "action": "set_brightness", "value": 5}]),
        json!([{"device": "thermostat", "action": "set_temperature", "value": 31}]),
        json!([{"device": "thermostat", "action": "set_temperature", "value": 21.5}]),
        json!([{"device": "thermostat", "action": "set_temperature"}]),
        json!([{"device": "tv", "action": "turn_on", "value": 1}]),
        json!([{"device": "garden_hose", "action": "turn_on"}]),
        json!([{"device": "tv", "action": "turn_on", "why": "x"}]),
    ] {
        assert!(!validator.is_valid(&commands(bad.clone())), "admitted {bad}");
    }
    assert!(!validator.is_valid(&json!({"commands": [], "extra": 1})));
    assert!(!validator.is_valid(&json!({})));
}

#[test]
fn every_generated_command_schema_also_passes_the_generic_command_schema() {
    let generic = load_schema("command.schema.json");
    for name in ["devices/home.toml", "devices/factory.toml"] {
        let catalog = Catalog::load(&repo_file(name)).unwrap();
        for device in &catalog.devices {
            for action in &device.actions {
                let value = device.param(action).map(|r| r.max);
                let command = Command { device: device.id.clone(), action: action.clone(), value };
                assert!(catalog.check(&command).is_ok());
                assert_valid(&generic, &serde_json::to_value(&command).unwrap());
            }
        }
    }
}

#[test]
fn acknowledgements_match_the_ack_schema() {
    let validator = load_schema("ack.schema.json");
    let ok = HearkenAck { status: AckStatus::Ok, state: Some(json!({"state": "on"})), error: None };
    let refused = HearkenAck { status: AckStatus::Error, state: None, error: Some("jammed".into()) };
    assert_valid(&validator, &serde_json::to_value(ok).unwrap());
    assert_valid(&validator, &serde_json::to_value(refused).unwrap());
    assert!(!validator.is_valid(&json!({"status": "maybe"})));
}

#[test]
fn audit_records_match_the_audit_record_schema() {
    let validator = load_schema("audit-record.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, AuditOptions { max_bytes: Some(400), ..AuditOptions::default() }).unwrap();
    let mut command = serde_json::Map::new();
    command.insert("device".into(), json!("tv"));
    command.insert("action".into(), json!("turn_on"));
    command.insert("value".into(), Value::Null);
    let seq = log.append("command", command.clone()).unwrap();
    let mut outcome = command;
    outcome.insert("ref".into(), json!(seq));
    outcome.insert("outcome".into(), json!("acknowledged"));
    outcome.insert("latency_ms".into(), json!(1.25));
    outcome.insert("broker_accepted".into(), json!(true));
    log.append("outcome", outcome).unwrap();
    drop(log);
    let mut checked = 0;
    for file in hearken::audit::segments(&path) {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            assert_valid(&validator, &serde_json::from_str(line).unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 3, "expected a rotated record too, checked {checked}");
}

#[test]
fn events_match_the_event_schema() {
    let validator = load_schema("event.schema.json");
    let command = Command { device: "tv".into(), action: "set_volume".into(), value: Some(20) };
    let delivery = Delivery {
        command_id: 7,
        outcome: Outcome::Timeout,
        latency: Duration::from_millis(200),
        state: None,
        reason: Some("no device acknowledgement".into()),
        broker_accepted: true,
    };
    assert_valid(&validator, &events::outcome_event("home", &command, &delivery, Some(3)));
    let late = LateAck { command_id: 7, latency: Duration::from_millis(350) };
    assert_valid(&validator, &events::late_ack_event("home", &command, &late, None));
    let unlock = Command { device: "front_door_lock".into(), action: "unlock".into(), value: None };
    assert_valid(&validator, &events::confirmation_needed_event("home", 1, &[unlock], 10_000, Some(4)));
    assert_valid(&validator, &events::confirmation_event("home", 1, "expired", "timeout", Some(5)));
    assert_valid(&validator, &events::not_handled_event("home", 3, "stt", "speech engine down", None));
    assert!(!validator.is_valid(&json!({"type": "confirmation", "site": "home", "ts": "2026-01-01T00:00:00Z"})));
}
