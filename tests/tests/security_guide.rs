//! The broker example of `docs/security.md`, run as written there: its
//! Mosquitto listener (TLS and passwords on one listener) and its
//! `[broker]` section, with only the paths, the host and the port replaced.
//! If the guide changes, this test runs the new text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use hearken_testkit::testbed::{free_port, Mosquitto};
use hearken_tests::rig::*;
use hearken_tests::*;
use serde_json::Value;

/// The first fenced block of the guide that contains `marker`.
fn block(guide: &str, marker: &str) -> String {
    let mut blocks = guide.split("```").skip(1).step_by(2);
    let found = blocks.find(|b| b.contains(marker)).unwrap_or_else(|| panic!("no block with {marker} in the guide"));
    // Drop the info string (`toml`) on the opening line.
    found.split_once('\n').map_or(String::new(), |(_, body)| body.to_owned())
}

#[test]
fn the_guides_tls_and_password_example_works_as_written() {
    let _one = serial();
    let guide = std::fs::read_to_string(repo_file("docs/security.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let d = dir.path().display().to_string();
    let port = free_port().unwrap();

    let listener = block(&guide, "listener 8883")
        .replace("8883", &port.to_string())
        .replace("/etc/mosquitto/certs/", &format!("{d}/"))
        .replace("/etc/mosquitto/passwd", &format!("{d}/passwd"));
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c", &format!("{d}/passwd"), "hearken", "correct horse battery"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(format!("{d}/passwd"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // The rig's own plain listener (for the simulated devices) comes first; the guide's is added as written.
    let broker = Mosquitto::start_with(&listener).unwrap();
    let _devices = Devices::start(&broker.url());

    let broker_section = block(&guide, "[broker]")
        .replace("broker.example.net:8883", &format!("localhost:{port}"))
        .replace("/etc/hearken/ca.pem", &format!("{d}/ca.pem"))
        .replace("/etc/hearken/mqtt-password", &format!("{d}/mqtt-password"));
    assert!(broker_section.contains("username = \"hearken\""), "{broker_section}");
    let requests = write_file(dir.path(), "requests.txt", "turn on the tv\n");
    let catalog = repo_file("devices/home.toml");
    let config_text = format!(
        "catalog = {:?}\n\n{broker_section}\n[audio]\nsource = \"text\"\nfile = {:?}\n\n[stt]\nthreads = 1\n\n\
         [intent]\nthreads = 2\n\n[audit]\npath = \"audit.log\"\n",
        catalog.to_str().unwrap(),
        requests.to_str().unwrap()
    );
    let run = |password: &str| -> (Vec<Value>, i32) {
        write_file(dir.path(), "mqtt-password", &format!("{password}\n"));
        let config = write_file(dir.path(), "hearken.toml", &config_text);
        let mut daemon = Daemon::start(&config, false);
        daemon.ready();
        daemon.stopped();
        let seen = daemon.seen.clone();
        (seen, daemon.exit_code())
    };

    let (reports, code) = run("correct horse battery");
    assert_eq!(code, 0);
    assert_eq!(reports[0]["broker_connected"], true, "{reports:?}");
    let line = reports.iter().find(|r| r["line"] == 1).unwrap();
    assert_eq!(acknowledged(line), vec![cmd("tv", "turn_on", Value::Null)], "{line}");

    let (reports, _) = run("wrong horse");
    assert_eq!(reports[0]["broker_connected"], false, "{reports:?}");
    let line = reports.iter().find(|r| r["line"] == 1).unwrap();
    assert_eq!(line["commands"][0]["outcome"], "not_sent", "{line}");
    let everything = format!("{reports:?}{}", std::fs::read_to_string(dir.path().join("audit.log")).unwrap());
    assert!(!everything.contains("horse"), "a password was printed or audited");
}
