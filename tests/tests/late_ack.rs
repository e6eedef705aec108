//! Regression test for issue 16: a late acknowledgement through `hearken run`
//! (not only `hearken send`) gets its `late_ack` audit record and event, and
//! the command's outcome stays a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::time::{Duration, Instant};

use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::{audit_records, config, serial, Daemon, Devices};
use hearken_tests::Spy;
use serde_json::Value;

#[test]
fn a_late_acknowledgement_through_the_daemon_is_audited_and_announced() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    // Every answer comes 600 ms after the command: past the 200 ms budget.
    let _devices = Devices::start_with(&broker.url(), &["--late-rate", "1", "--late-ms", "600"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let spy = runtime.block_on(Spy::start(broker.port(), "hearken/home/events"));

    let config = config(dir.path(), &broker.url(), "source = \"text\"", "");
    let mut daemon = Daemon::start(&config, true);
    daemon.ready();
    let mut stdin = daemon.child.stdin.take().unwrap();
    writeln!(stdin, "turn on the kitchen light").unwrap();
    let report = daemon.utterance(1);
    assert_eq!(report["commands"][0]["outcome"], "timeout", "{report}");
    let utterance_seq = report["audit_seq"].as_u64().unwrap();

    // The event comes once the late answer arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let late_event = loop {
        let events: Vec<Value> =
            spy.seen().iter().filter_map(|s| serde_json::from_slice::<Value>(&s.payload).ok()).collect();
        if let Some(late) = events.into_iter().find(|e| e["type"] == "late_ack") {
            break late;
        }
        assert!(Instant::now() < deadline, "no late_ack event within 10 s: {:?}", spy.seen());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(late_event["device"], "kitchen_light", "{late_event}");
    assert_eq!(late_event["action"], "turn_on", "{late_event}");
    assert_eq!(late_event["audit_seq"], utterance_seq, "{late_event}");
    assert!(late_event["latency_ms"].as_f64().unwrap() >= 200.0, "{late_event}");

    drop(stdin);
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    // The audit log (checked against its schema by the rig) has the record, after the outcome.
    let records = audit_records(dir.path());
    let outcome = records.iter().position(|r| r["kind"] == "outcome" && r["ref"] == utterance_seq).unwrap();
    let late = records.iter().position(|r| r["kind"] == "late_ack").expect("no late_ack record");
    assert!(late > outcome, "late_ack before the outcome: {records:?}");
    assert_eq!(records[late]["ref"], utterance_seq);
    assert_eq!(records[late]["device"], "kitchen_light");
    assert_eq!(records[outcome]["outcome"], "timeout", "the outcome stays a timeout");
}
