//! The daemon's own logic with fake engines (hearken_testkit::fake_engines)
//! instead of the models: a real broker, the simulated devices and `hearken
//! run`, with a chat "model" whose every answer is scripted. What a model
//! says is validated before anything is published, whatever it says.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use hearken_testkit::fake_engines::FakeEngine;
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::{acknowledged, audit_records, cmd, serial, Daemon, Devices};
use hearken_tests::{repo_file, write_file, Spy};
use serde_json::{json, Value};

/// A request the words leave to the model (300 is past the light's brightness range).
const MODEL_REQUEST: &str = "set the kitchen light to 300";

fn config(dir: &Path, broker: &str, stt: &str, intent: &str, input: &Path) -> std::path::PathBuf {
    let text = format!(
        "catalog = {catalog:?}\n\n[broker]\nurl = \"{broker}\"\nconnect_timeout_ms = 3000\n\n\
         [audio]\nsource = \"text\"\nfile = {input:?}\n\n[stt]\nurl = \"{stt}\"\n\n[intent]\nurl = \"{intent}\"\n\n\
         [audit]\npath = \"audit.log\"\nfsync_interval_ms = 0\n",
        catalog = repo_file("devices/home.toml").to_str().unwrap(),
        input = input.to_str().unwrap(),
    );
    write_file(dir, "hearken.toml", &text)
}

#[test]
fn a_model_answer_off_the_request_is_refused_and_nothing_of_it_is_published() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let _devices = Devices::start(&broker.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let spy = runtime.block_on(Spy::start(broker.port(), "#"));
    let other = r#"{"intent":"other","commands":[]}"#;
    let unlock = r#"{"intent":"control","commands":[{"device":"front_door_lock","action":"unlock"}]}"#;
    let brighter =
        r#"{"intent":"control","commands":[{"device":"kitchen_light","action":"set_color_temp","value":300}]}"#;
    // The warm-up's answer, then one answer per request that asks the model.
    let chat = runtime.block_on(FakeEngine::chat(&[other, unlock, brighter], other)).unwrap();
    let stt = runtime.block_on(FakeEngine::stt(&[], "")).unwrap();
    let input = write_file(
        dir.path(),
        "requests.txt",
        &format!("{MODEL_REQUEST}\n{MODEL_REQUEST}\nturn off the porch light\nlock the garage door\n"),
    );
    let config = config(dir.path(), &broker.url(), &stt.url(), &chat.url(), &input);

    let mut daemon = Daemon::start_without_models(&config, false);
    daemon.ready();
    daemon.stopped();
    let reports = daemon.seen.clone();
    assert_eq!(daemon.exit_code(), 0);
    let line = |n: u64| reports.iter().find(|r| r["line"] == n).unwrap_or_else(|| panic!("no line {n}: {reports:?}"));

    // The model commanded a device the request did not leave to it: refused whole.
    let refused = line(1);
    assert_eq!(refused["error"]["stage"], "validation", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("front_door_lock"), "{refused}");
    assert_eq!(refused["commands"], json!([]));
    // A valid answer goes out and is acknowledged.
    assert_eq!(acknowledged(line(2)), vec![cmd("kitchen_light", "set_color_temp", json!(300))]);
    // Words alone settle the third request: the model is not asked for it.
    assert_eq!(acknowledged(line(3)), vec![cmd("porch_light", "turn_off", Value::Null)]);
    assert_eq!(chat.requests().len(), 3, "warm-up and the two model requests only");
    // A verb the named device cannot do: no command, and the reason in the report line.
    let refused = line(4);
    assert_eq!(refused["commands"], json!([]), "{refused}");
    assert_eq!(refused["no_command_reason"], "unsupported_action", "{refused}");
    assert!(refused["explanation"].as_str().unwrap().contains("garage door"), "{refused}");
    assert!(chat.requests()[1]["response_format"]["json_schema"]["schema"].is_object(), "the reply is constrained");

    // Nothing reached the lock; its topic never carried a message.
    let lock: Vec<_> = spy.seen_on(|t| t.contains("front_door")).into_iter().map(|s| s.topic).collect();
    assert!(lock.is_empty(), "published to the lock: {lock:?}");
    let records = audit_records(dir.path());
    assert!(
        records.iter().filter(|r| r["kind"] == "outcome").all(|r| r["device"] != "front_door_lock"),
        "an outcome for the lock: {records:?}"
    );
    let first = records.iter().find(|r| r["kind"] == "utterance" && r["line"] == 1).unwrap();
    assert_eq!(first["commands"], json!([]), "the refused answer is not recorded as commands: {first}");
    let fourth = records.iter().find(|r| r["kind"] == "utterance" && r["line"] == 4).unwrap();
    assert_eq!(fourth["no_command_reason"], "unsupported_action", "the reason is audited: {fourth}");
}
