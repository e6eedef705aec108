//! Requests as text on `hearken/<site>/text` (issue 18): the same limits,
//! intent stage, confirmation, audit and events as speech, answered with a
//! `text_reply` event; a real broker, the simulated devices, `hearken run`
//! with fake engines (the words settle every request here, no model).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use hearken_testkit::fake_engines::FakeEngine;
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::{acknowledged, audit_records, cmd, serial, Daemon, Devices};
use hearken_tests::{repo_file, write_file, Spy};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

fn config(dir: &Path, broker: &str, stt: &str, intent: &str) -> std::path::PathBuf {
    let text = format!(
        "catalog = {catalog:?}\n\n[broker]\nurl = \"{broker}\"\nconnect_timeout_ms = 3000\n\n\
         [audio]\nsource = \"text\"\n\n[activation]\nmode = \"wake_phrase\"\n\n[stt]\nurl = \"{stt}\"\n\n[intent]\nurl = \"{intent}\"\n\n\
         [limits]\nmax_request_chars = 120\n\n[audit]\npath = \"audit.log\"\nfsync_interval_ms = 0\n",
        catalog = repo_file("devices/home.toml").to_str().unwrap(),
    );
    write_file(dir, "hearken.toml", &text)
}

/// The `text_reply` event with this request id, within 10 s.
fn reply(events: &Spy, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = events
            .seen()
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
            .find(|e| e["type"] == "text_reply" && e["request_id"] == id);
        if let Some(event) = found {
            return event;
        }
        assert!(Instant::now() < deadline, "no text_reply for {id}: {:?}", events.seen().len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn text_messages_are_requests_with_the_same_rules_and_a_reply() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let _devices = Devices::start(&broker.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let events = runtime.block_on(Spy::start(broker.port(), "hearken/home/events"));
    let sender = runtime.block_on(Spy::start(broker.port(), "nothing/here"));
    let other = r#"{"intent":"other","commands":[]}"#;
    let chat = runtime.block_on(FakeEngine::chat(&[], other)).unwrap();
    let stt = runtime.block_on(FakeEngine::stt(&[], "")).unwrap();
    let config = config(dir.path(), &broker.url(), &stt.url(), &chat.url());
    let mut daemon = Daemon::start_without_models(&config, true);
    daemon.ready();
    let send = |payload: String| {
        runtime
            .block_on(sender.client.publish("hearken/home/text", QoS::AtLeastOnce, false, payload.into_bytes()))
            .unwrap();
    };

    // No wake phrase needed: a message is addressed to hearken. The reply
    // carries the outcomes.
    send(json!({"text": "turn on the kitchen light", "id": "r1"}).to_string());
    let first = reply(&events, "r1");
    assert_eq!(first["commands"][0]["outcome"], "acknowledged", "{first}");
    let report = daemon.utterance(first["utterance"].as_u64().unwrap());
    assert_eq!(report["via"], "mqtt");
    assert_eq!(acknowledged(&report), vec![cmd("kitchen_light", "turn_on", Value::Null)]);

    // The speaker's room comes with the message.
    send(json!({"text": "turn off the light", "id": "r2", "area": "kitchen"}).to_string());
    let second = reply(&events, "r2");
    assert_eq!(second["commands"][0]["device"], "kitchen_light", "{second}");
    assert_eq!(second["commands"][0]["action"], "turn_off", "{second}");
    assert_ne!(second["utterance"], first["utterance"], "every request has its own id");

    // A dangerous action waits for confirmation, as spoken.
    send(json!({"text": "unlock the front door", "id": "r3"}).to_string());
    let third = reply(&events, "r3");
    assert_eq!(third["needs_confirmation"][0]["device"], "front_door_lock", "{third}");
    assert_eq!(third["commands"], json!([]), "nothing sent before the confirmation: {third}");

    // Refusals and errors come back with their reason.
    send(json!({"text": "what time is it", "id": "r4"}).to_string());
    assert!(reply(&events, "r4")["no_command_reason"].is_string());
    send(json!({"text": "lights on", "id": "r5", "area": "attic"}).to_string());
    let unknown = reply(&events, "r5");
    assert_eq!(unknown["stage"], "input", "{unknown}");
    assert!(unknown["error"].as_str().unwrap().contains("attic"), "{unknown}");
    send(json!({"text": "turn on the kitchen light ".repeat(10), "id": "r6"}).to_string());
    assert_eq!(reply(&events, "r6")["stage"], "limits");

    // A plain-text payload works too; a speech line on stdin still needs the wake phrase.
    send("turn off the porch light".to_owned());
    let plain = daemon.wait_for("plain text report", Duration::from_secs(10), |l| {
        l["via"] == "mqtt" && l["text"] == "turn off the porch light"
    });
    assert_eq!(acknowledged(&plain), vec![cmd("porch_light", "turn_off", Value::Null)]);

    drop(daemon.child.stdin.take());
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    let records = audit_records(dir.path());
    let utterances: Vec<&Value> = records.iter().filter(|r| r["kind"] == "utterance" && r["via"] == "mqtt").collect();
    assert_eq!(utterances.len(), 7, "every message is audited: {records:#?}");
    assert!(utterances.iter().any(|r| r["request_id"] == "r2" && r["area"] == "kitchen"));
}
