//! Home Assistant MQTT discovery (issue 18): the configs Home Assistant
//! reads (component, unique_id, state or command topic, availability, one
//! device), states that follow the daemon, `offline` by the broker's will
//! when the daemon is killed, and the configs gone when discovery is turned
//! off. A real broker, the simulated devices, `hearken run` with fake engines.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hearken_testkit::fake_engines::FakeEngine;
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::{serial, signal, Daemon, Devices};
use hearken_tests::{repo_file, write_file, Spy};
use serde_json::Value;

fn config(dir: &Path, broker: &str, stt: &str, intent: &str, discovery: bool) -> std::path::PathBuf {
    let text = format!(
        "catalog = {catalog:?}\n\n[broker]\nurl = \"{broker}\"\nconnect_timeout_ms = 3000\n\n\
         [audio]\nsource = \"text\"\n\n[stt]\nurl = \"{stt}\"\n\n[intent]\nurl = \"{intent}\"\n\n\
         [homeassistant]\ndiscovery = {discovery}\n\n[audit]\npath = \"audit.log\"\n",
        catalog = repo_file("devices/home.toml").to_str().unwrap(),
    );
    write_file(dir, "hearken.toml", &text)
}

/// The retained messages under `filter` a new subscriber gets, by topic.
fn retained(broker: &Mosquitto, runtime: &tokio::runtime::Runtime, filter: &str) -> Vec<(String, Vec<u8>)> {
    let spy = runtime.block_on(Spy::start(broker.port(), filter));
    std::thread::sleep(Duration::from_millis(500));
    spy.seen().into_iter().filter(|m| m.retain).map(|m| (m.topic, m.payload)).collect()
}

fn wait_for_state(
    broker: &Mosquitto,
    runtime: &tokio::runtime::Runtime,
    topic: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = retained(broker, runtime, topic);
        if let Some((_, payload)) = now.first() {
            let text = String::from_utf8_lossy(payload).into_owned();
            if want(&text) {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{topic}: {now:?}");
    }
}

#[test]
fn hearken_appears_in_home_assistant_goes_offline_when_killed_and_leaves_cleanly() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let _devices = Devices::start(&broker.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let other = r#"{"intent":"other","commands":[]}"#;
    let chat = runtime.block_on(FakeEngine::chat(&[], other)).unwrap();
    let stt = runtime.block_on(FakeEngine::stt(&[], "")).unwrap();

    let mut daemon =
        Daemon::start_without_models(&config(dir.path(), &broker.url(), &stt.url(), &chat.url(), true), true);
    daemon.ready();
    // What Home Assistant reads: one config per entity, as its MQTT integration expects them.
    let configs = retained(&broker, &runtime, "homeassistant/#");
    assert_eq!(configs.len(), 9, "{:?}", configs.iter().map(|c| &c.0).collect::<Vec<_>>());
    let mut components = Vec::new();
    for (topic, payload) in &configs {
        let parts: Vec<&str> = topic.split('/').collect();
        assert_eq!(
            (parts.len(), parts[0], parts[2], parts[4]),
            (5, "homeassistant", "hearken_home", "config"),
            "{topic}"
        );
        let config: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(config["unique_id"], format!("hearken_home_{}", parts[3]), "{config}");
        assert_eq!(config["availability_topic"], "hearken/home/status");
        assert_eq!(config["device"]["identifiers"][0], "hearken_home");
        assert!(config["name"].is_string());
        match parts[1] {
            "sensor" | "binary_sensor" => {
                assert!(config["state_topic"].as_str().unwrap().starts_with("hearken/home/"), "{config}")
            }
            "button" => assert!(config["command_topic"].is_string() && config["payload_press"].is_string(), "{config}"),
            other => panic!("unexpected component {other}"),
        }
        components.push(parts[1].to_owned());
    }
    components.sort();
    components.dedup();
    assert_eq!(components, ["binary_sensor", "button", "sensor"]);
    let button = |object: &str| -> Value {
        let (_, payload) = configs.iter().find(|(t, _)| t.ends_with(&format!("/{object}/config"))).unwrap();
        serde_json::from_slice(payload).unwrap()
    };
    assert_eq!(button("listen")["command_topic"], "hearken/home/listen");
    assert_eq!(
        (button("cancel")["command_topic"].clone(), button("cancel")["payload_press"].clone()),
        ("hearken/home/confirm".into(), "cancel".into())
    );
    assert_eq!(retained(&broker, &runtime, "hearken/home/status")[0].1, b"online");

    // States follow the daemon.
    writeln!(daemon.child.stdin.as_mut().unwrap(), "turn on the kitchen light").unwrap();
    daemon.utterance(1);
    let transcript = wait_for_state(&broker, &runtime, "hearken/home/ha/last_transcript", |s| !s.is_empty());
    assert_eq!(transcript, "turn on the kitchen light");
    let outcome = wait_for_state(&broker, &runtime, "hearken/home/ha/last_outcome", |s| s.contains("kitchen_light"));
    assert!(outcome.contains("acknowledged"), "{outcome}");
    wait_for_state(&broker, &runtime, "hearken/home/ha/stt_engine", |s| s == "ON");

    // Killed: the broker publishes the will.
    signal(daemon.child.id(), "KILL");
    let _ = daemon.child.wait();
    wait_for_state(&broker, &runtime, "hearken/home/status", |s| s == "offline");

    // Turned off: the configs a run left are removed.
    let mut daemon =
        Daemon::start_without_models(&config(dir.path(), &broker.url(), &stt.url(), &chat.url(), false), true);
    daemon.ready();
    assert!(retained(&broker, &runtime, "homeassistant/#").is_empty(), "configs left behind");
    drop(daemon.child.stdin.take());
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
}
