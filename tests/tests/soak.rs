//! The CI variant of `hearken bench soak`: 1,000 commands through the
//! daemon's text path with faults injected (acknowledgements dropped, late,
//! duplicated, forged and malformed; the broker restarted and the engines
//! killed at random moments; an online API that fails), and every
//! invariant checked from the report. The full run (10,000 commands) is
//! `hearken bench soak`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearken_tests::rig::serial;
use hearken_tests::*;
use serde_json::Value;

#[test]
fn a_thousand_commands_through_faults_are_all_accounted_for() {
    let _one = serial();
    whisper_model();
    intent_model();
    let keep = tempfile::tempdir().unwrap();
    let out = hearken(&[
        "bench",
        "soak",
        "--commands",
        "1000",
        "--disruption-every",
        "100",
        "--catalog",
        repo_file("devices/home.toml").to_str().unwrap(),
        "--keep",
        keep.path().to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("no report ({e}): {}\n{}", stdout(&out), stderr(&out)));
    let invariants = &report["invariants"];
    assert!(report["commands"].as_u64().unwrap() >= 1000, "{report}");
    for zero in [
        "unaccounted_commands",
        "audit_outcomes_missing",
        "published_twice",
        "published_after_reconnect",
        "outside_catalog",
        "unexpected_on_wire",
    ] {
        assert_eq!(invariants[zero], 0, "{zero}: {report}");
    }
    assert_eq!(invariants["audit_verifies"], true, "{report}");
    assert_eq!(invariants["daemon_exit_code"], 0, "{report}");
    assert!(out.status.success(), "{report}");
    // Faults really happened, at least one per 100 commands, of every kind.
    let faults = &report["faults"];
    assert!(faults["per_100_commands"].as_f64().unwrap() >= 1.0, "{report}");
    for kind in ["broker_restarts", "speech_engine_kills", "intent_engine_kills"] {
        assert!(faults["disruptions"][kind].as_u64().unwrap_or(0) >= 1, "no {kind}: {report}");
    }
    assert!(faults["acks_dropped"].as_u64().unwrap() >= 1, "{report}");
    // Something was acknowledged, and the wire check looked at real traffic.
    assert!(report["outcomes"]["acknowledged"].as_u64().unwrap() >= 900, "{report}");
    assert!(report["wire_messages_checked"].as_u64().unwrap() >= 900, "{report}");
}
