//! Catalog reloads in a running daemon (issue 18): under a stream of text
//! requests, the catalog file is reloaded by SIGHUP and by a message on
//! `hearken/<site>/catalog/reload` — a device added, a broken file, a device
//! removed under a pending confirmation. Nothing is lost, nothing answered
//! from a half-loaded catalog, the engines keep running (same PIDs), and
//! every reload is audited and published.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::{audit_records, serial, Daemon, Devices};
use hearken_tests::{repo_file, write_file, Spy};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const GARDEN_LIGHT: &str = "\n[[devices]]\nid = \"garden_light\"\nname = \"garden light\"\narea = \"garden\"\nactions = [\"turn_on\", \"turn_off\"]\n";

fn config(dir: &Path, broker: &str, catalog: &Path) -> std::path::PathBuf {
    let text = format!(
        "catalog = {catalog:?}\n\n[broker]\nurl = \"{broker}\"\nconnect_timeout_ms = 3000\n\n[audio]\nsource = \"text\"\n\n\
         [stt]\nthreads = 1\n\n[intent]\nthreads = 1\n\n[audit]\npath = \"audit.log\"\n",
        catalog = catalog.to_str().unwrap()
    );
    write_file(dir, "hearken.toml", &text)
}

fn events_of(spy: &Spy, kind: &str) -> Vec<Value> {
    spy.seen()
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .filter(|e| e["type"] == kind)
        .collect()
}

fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn reloads_under_a_stream_of_requests_lose_nothing_and_keep_the_engines() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let home = std::fs::read_to_string(repo_file("devices/home.toml")).unwrap();
    let bigger = format!("{home}{GARDEN_LIGHT}");
    // The simulated devices know the garden light from the start; the daemon learns of it by reloading.
    let simulated = write_file(dir.path(), "simulated.toml", &bigger);
    let _devices = Devices::start_catalog(&broker.url(), &simulated);
    let catalog = write_file(dir.path(), "catalog.toml", &home);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let events = runtime.block_on(Spy::start(broker.port(), "hearken/home/events"));
    let sender = runtime.block_on(Spy::start(broker.port(), "nothing/here"));
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &catalog), true);
    let ready = daemon.ready();
    let pids = [ready["stt_pid"].as_u64().unwrap(), ready["intent_pid"].as_u64().unwrap()];
    let publish = |topic: &str, payload: String| {
        runtime.block_on(sender.client.publish(topic, QoS::AtLeastOnce, false, payload.into_bytes())).unwrap();
    };
    let request = |id: String, text: &str| publish("hearken/home/text", json!({"text": text, "id": id}).to_string());
    let sighup = || {
        let status = Command::new("kill").args(["-HUP", &daemon_pid(&daemon).to_string()]).status().unwrap();
        assert!(status.success());
    };
    // Five devices in turn, so that no device meets its rate limit (60 a minute).
    const LIGHTS: [&str; 5] = ["kitchen light", "living room lamp", "bedroom light", "porch light", "coffee machine"];
    let stream = |from: usize, to: usize| {
        for n in from..to {
            let verb = if (n / 5) % 2 == 0 { "turn on" } else { "turn off" };
            request(format!("q{n}"), &format!("{verb} the {}", LIGHTS[n % 5]));
        }
    };
    let answered = |to: usize| {
        wait_until("replies to the stream so far", Duration::from_secs(60), || {
            let replies = events_of(&events, "text_reply");
            (0..to).all(|n| replies.iter().any(|r| r["request_id"] == format!("q{n}")))
        })
    };

    // 50 requests; while they are handled the garden light appears (SIGHUP).
    stream(0, 50);
    answered(25);
    std::fs::write(&catalog, &bigger).unwrap();
    let appeared = Instant::now();
    sighup();
    wait_until("catalog_loaded after SIGHUP", Duration::from_secs(30), || {
        !events_of(&events, "catalog_loaded").is_empty()
    });
    request("garden".into(), "turn on the garden light");
    wait_until("the garden light acknowledged", Duration::from_secs(30), || {
        events_of(&events, "text_reply").iter().any(|e| e["request_id"] == "garden")
    });
    let newly_joined = appeared.elapsed();
    eprintln!("reload soak: new device acknowledged {} ms after it was written", newly_joined.as_millis());

    // 50 more, then a broken file (MQTT): refused, the old catalog keeps serving.
    stream(50, 100);
    std::fs::write(&catalog, format!("{bigger}\n[[devices]]\nid = \"broken\"\n")).unwrap();
    publish("hearken/home/catalog/reload", String::new());
    wait_until("catalog_rejected", Duration::from_secs(30), || !events_of(&events, "catalog_rejected").is_empty());
    request("garden-2".into(), "turn off the garden light");

    // A confirmation waits on the lock; the next catalog has no lock: cancelled.
    request("lock".into(), "unlock the front door");
    wait_until("the unlock held", Duration::from_secs(30), || !events_of(&events, "confirmation_needed").is_empty());
    let without_lock = home
        .replace("id = \"front_door_lock\"", "id = \"front_door_lock_gone\"")
        .replace("name = \"front door lock\"", "name = \"side door lock\"");
    std::fs::write(&catalog, &without_lock).unwrap();
    stream(100, 150);
    publish("hearken/home/catalog/reload", String::new());
    wait_until("a second catalog_loaded", Duration::from_secs(30), || events_of(&events, "catalog_loaded").len() >= 2);
    request("garden-3".into(), "turn on the garden light");

    // Every request answered.
    let ids: Vec<String> =
        (0..150).map(|n| format!("q{n}")).chain(["garden", "garden-2", "garden-3", "lock"].map(String::from)).collect();
    wait_until("a reply to every request", Duration::from_secs(60), || {
        let replies = events_of(&events, "text_reply");
        ids.iter().all(|id| replies.iter().any(|r| &r["request_id"] == id))
    });
    let replies = events_of(&events, "text_reply");
    let reply = |id: &str| replies.iter().find(|r| r["request_id"] == id).unwrap().clone();
    let mut lost = 0;
    for n in 0..150 {
        let r = reply(&format!("q{n}"));
        if r["commands"][0]["outcome"] != "acknowledged" {
            lost += 1;
            eprintln!("q{n}: {r}");
        }
    }
    assert_eq!(lost, 0, "every kitchen light request acknowledged across the reloads");
    assert_eq!(reply("garden")["commands"][0]["outcome"], "acknowledged", "the new device");
    assert_eq!(reply("garden-2")["commands"][0]["outcome"], "acknowledged", "the broken file did not replace it");
    assert_eq!(
        reply("garden-3")["no_command_reason"],
        "no_such_device",
        "gone with the last reload: {}",
        reply("garden-3")
    );
    let cancelled = events_of(&events, "confirmation");
    assert!(cancelled.iter().any(|c| c["decision"] == "cancelled" && c["by"] == "catalog_reload"), "{cancelled:?}");
    assert!(pids.iter().all(|&pid| alive(pid)), "an engine was restarted");

    drop(daemon.child.stdin.take());
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);

    // Audited: two loads with the files' hashes, one refusal with its reason.
    let records = audit_records(dir.path());
    let loads: Vec<&Value> = records.iter().filter(|r| r["kind"] == "catalog_loaded").collect();
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert_eq!(loads[0]["trigger"], "sighup");
    assert_eq!(loads[0]["added"], json!(["garden_light"]));
    assert_eq!(loads[1]["sha256"], hex::encode(Sha256::digest(without_lock.as_bytes())));
    let refused: Vec<&Value> = records.iter().filter(|r| r["kind"] == "catalog_rejected").collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0]["reason"].as_str().unwrap().contains("missing field `name`"), "{}", refused[0]);
    eprintln!(
        "reload soak: {} requests, 3 reloads (2 loaded, 1 refused), lost {lost}, new device {} ms",
        ids.len(),
        newly_joined.as_millis()
    );
}

fn daemon_pid(daemon: &Daemon) -> u32 {
    daemon.child.id()
}
