//! `hearken send`, `hearken simulate` and `hearken audit verify` as processes,
//! against a real Mosquitto (plain, TLS and password listeners).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearken_testkit::testbed::{free_port, Mosquitto};
use hearken_tests::{
    hearken, hearken_bin, make_certificates, repo_file, stderr, stdout, write_file, Spy, MIXED_CATALOG,
};
use serde_json::Value;

/// A `hearken simulate` process, stopped with SIGTERM on drop.
struct SimulatorProcess {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl SimulatorProcess {
    fn start(url: &str, catalog: &Path, extra: &[&str]) -> SimulatorProcess {
        let mut child = Command::new(hearken_bin())
            .args(["simulate", "--broker", url, "--catalog", catalog.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(ready["simulator"], "ready");
        SimulatorProcess { child, lines }
    }

    /// Sends SIGTERM and returns the summary line.
    fn stop(mut self) -> Value {
        terminate(&self.child);
        let summary = self.lines.next().unwrap().unwrap();
        let _ = self.child.wait();
        serde_json::from_str(&summary).unwrap()
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn send(url: &str, catalog: &Path, audit: Option<&Path>, extra: &[&str], command: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["send", "--broker", url, "--catalog", catalog.to_str().unwrap()];
    if let Some(audit) = audit {
        args.extend(["--audit", audit.to_str().unwrap()]);
    }
    args.extend(extra);
    args.extend(command);
    let out = hearken(&args);
    let line = stdout(&out);
    let value = if line.trim().is_empty() { Value::Null } else { serde_json::from_str(line.trim()).unwrap() };
    (out.status.code().unwrap(), value, stderr(&out))
}

fn lab_catalog(dir: &Path, budget_ms: u64) -> PathBuf {
    write_file(dir, "lab.toml", &MIXED_CATALOG.replace("budget_ms = 1000", &format!("budget_ms = {budget_ms}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_prints_the_contract_line_audits_and_publishes_an_event() {
    let broker = Mosquitto::start().unwrap();
    let home = repo_file("devices/home.toml");
    let simulator = SimulatorProcess::start(&broker.url(), &home, &[]);
    let events = Spy::start(broker.port(), "hearken/home/events").await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");

    for command in [
        &["kitchen_light", "set_brightness", "120"][..],
        &["porch_light", "turn_on"],
        &["thermostat", "set_temperature", "21"],
    ] {
        let (code, line, err) = send(&broker.url(), &home, Some(&audit), &[], command);
        assert_eq!(code, 0, "{line} {err}");
        assert_eq!(line["outcome"], "acknowledged");
        assert_eq!(line["device"], command[0]);
        assert_eq!(line["action"], command[1]);
        assert_eq!(line["value"], command.get(2).map_or(Value::Null, |v| v.parse::<i64>().unwrap().into()));
        assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(line["state"].is_object(), "{line}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = events.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let event: Value = serde_json::from_slice(&seen[0].payload).unwrap();
    assert_eq!(event["type"], "command_outcome");
    assert_eq!(event["outcome"], "acknowledged");
    assert!(!seen[0].retain);

    let out = hearken(&["audit", "verify", audit.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["records"], 6);
    assert_eq!(report["incomplete"], serde_json::json!([]));

    let summary = simulator.stop();
    assert_eq!(summary["simulator"], "stopped");
    assert_eq!(summary["received"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_command_is_refused_before_anything_is_published() {
    let broker = Mosquitto::start().unwrap();
    let spy = Spy::start(broker.port(), "#").await;
    let home = repo_file("devices/home.toml");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    for (command, words) in [
        (&["kitchen_light", "set_brightness", "999"][..], "outside 0..=254"),
        (&["kitchen_light", "unlock"], "has no action 'unlock'"),
        (&["toaster", "turn_on"], "unknown device 'toaster'"),
        (&["thermostat", "set_temperature", "warm"], "'warm' is not an integer"),
        (&["tv", "turn_on", "3"], "takes no value"),
    ] {
        let (code, line, err) = send(&broker.url(), &home, Some(&audit), &[], command);
        assert_eq!(code, 2, "{command:?}: {line} {err}");
        assert!(err.contains("nothing published") && err.contains(words), "{err}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(spy.seen().is_empty(), "{:?}", spy.seen());
    assert!(!audit.exists(), "refused commands never reach the audit log as commands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_absent_gives_not_sent_audited() {
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let url = format!("mqtt://127.0.0.1:{port}");
    let catalog = repo_file("devices/home.toml");
    let (code, line, err) = send(&url, &catalog, Some(&audit), &["--connect-timeout-ms", "500"], &["tv", "turn_on"]);
    assert_eq!(code, 3, "{line}");
    assert_eq!(line["outcome"], "not_sent");
    assert!(line["reason"].as_str().unwrap().contains("not reachable"), "{line}");
    assert!(err.contains("not reachable"), "{err}");
    let records: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["kind"], "command");
    assert_eq!(records[1]["outcome"], "not_sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_acknowledgement_is_printed_and_audited_as_late() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = lab_catalog(dir.path(), 100);
    let _simulator = SimulatorProcess::start(&broker.url(), &catalog, &["--late-rate", "1", "--late-ms", "300"]);
    let audit = dir.path().join("audit.jsonl");
    let (code, line, _) = send(&broker.url(), &catalog, Some(&audit), &[], &["desk_lamp", "turn_on"]);
    assert_eq!(code, 3);
    assert_eq!(line["outcome"], "timeout");
    assert_eq!(line["broker_accepted"], true);
    assert!(line["late_ack_ms"].as_f64().unwrap() >= 300.0, "{line}");
    let kinds: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["command", "outcome", "late_ack"]);
    assert!(hearken(&["audit", "verify", audit.to_str().unwrap()]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_tampered_record() {
    let broker = Mosquitto::start().unwrap();
    let home = repo_file("devices/home.toml");
    let _simulator = SimulatorProcess::start(&broker.url(), &home, &[]);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    for _ in 0..3 {
        let (code, _, err) = send(&broker.url(), &home, Some(&audit), &[], &["front_door_lock", "lock"]);
        assert_eq!(code, 0, "{err}");
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    let tampered = text.replacen("\"action\":\"lock\"", "\"action\":\"unlock\"", 3);
    let tampered: Vec<&str> = tampered.lines().collect();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2] = tampered[2].to_owned();
    std::fs::write(&audit, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let out = hearken(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["seq"], 2);
    assert_eq!(report["line"], 3);
    assert!(stderr(&out).contains("modified"), "{}", stderr(&out));

    // A torn last line (a crash mid-write) is reported, not skipped.
    std::fs::write(&audit, format!("{text}{{\"seq\":6,\"ts\":")).unwrap();
    let out = hearken(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("torn last record"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_and_password_authentication() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let passwords = dir.path().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c", passwords.to_str().unwrap(), "operator", "s3cret"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&passwords, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (tls_port, auth_port) = (free_port().unwrap(), free_port().unwrap());
    let d = dir.path().display();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\nallow_anonymous true\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
        passwords.display()
    ))
    .unwrap();
    let catalog = repo_file("devices/home.toml");
    let _simulator = SimulatorProcess::start(&broker.url(), &catalog, &[]);

    let tls = format!("mqtts://localhost:{tls_port}");
    let ca = format!("{d}/ca.pem");
    let (code, line, err) = send(&tls, &catalog, None, &["--ca-file", &ca], &["tv", "turn_on"]);
    assert_eq!(code, 0, "{line} {err}");
    assert_eq!(line["outcome"], "acknowledged");

    let other_ca = format!("{d}/other_ca.pem");
    let (code, line, _) =
        send(&tls, &catalog, None, &["--ca-file", &other_ca, "--connect-timeout-ms", "1000"], &["tv", "turn_on"]);
    assert_eq!(code, 3);
    assert_eq!(line["outcome"], "not_sent", "{line}");

    let (code, _, err) = send(&tls, &catalog, None, &[], &["tv", "turn_on"]);
    assert_eq!(code, 1);
    assert!(err.contains("--ca-file"), "{err}");

    let auth = format!("mqtt://127.0.0.1:{auth_port}");
    let password_file = write_file(dir.path(), "password.txt", "s3cret\n");
    let (code, line, err) = send(
        &auth,
        &catalog,
        None,
        &["--username", "operator", "--password-file", password_file.to_str().unwrap()],
        &["tv", "turn_off"],
    );
    assert_eq!(code, 0, "{line} {err}");
    let wrong = write_file(dir.path(), "wrong.txt", "guess\n");
    let (code, line, err) = send(
        &auth,
        &catalog,
        None,
        &["--username", "operator", "--password-file", wrong.to_str().unwrap(), "--connect-timeout-ms", "1000"],
        &["tv", "turn_off"],
    );
    assert_eq!(code, 3);
    assert_eq!(line["outcome"], "not_sent");
    assert!(!err.contains("guess") && !line.to_string().contains("guess"), "password leaked: {err} {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_name_with_a_hyphen_is_one_topic_level() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let factory = std::fs::read_to_string(repo_file("devices/factory.toml")).unwrap();
    let catalog =
        write_file(dir.path(), "plant-7.toml", &factory.replace("site = \"plant_one\"", "site = \"plant-7\""));
    let out = hearken(&["devices", "check", catalog.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let simulator = SimulatorProcess::start(&broker.url(), &catalog, &[]);
    let commands = Spy::start(broker.port(), "hearken/plant-7/conveyor_1/#").await;
    let events = Spy::start(broker.port(), "hearken/plant-7/events").await;
    let (code, line, err) = send(&broker.url(), &catalog, None, &[], &["conveyor_1", "stop"]);
    assert_eq!(code, 0, "{line} {err}");
    assert_eq!(line["outcome"], "acknowledged");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(commands.seen().len(), 1, "{:?}", commands.seen());
    assert_eq!(events.seen().len(), 1, "{:?}", events.seen());
    assert_eq!(simulator.stop()["received"], 1);
}
