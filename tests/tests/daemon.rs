//! `hearken run` end to end: a real Mosquitto, both real engines with the
//! real models, the simulated devices of devices/home.toml, and recordings
//! synthesized with espeak-ng. Each test runs the daemon binary and reads its
//! JSON lines. The daemons run one at a time: two pairs of engines computing
//! at once on a two-core box would turn timing into the thing under test.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hearken_testkit::testbed::free_port;
use hearken_tests::rig::*;
use hearken_tests::*;
use serde_json::Value;

#[test]
fn the_bundled_recording_gives_the_acknowledged_commands_and_a_verifiable_audit_log() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let recording = repo_file("devices/recordings/home-demo.wav");
    let audio = file_source(&recording, false);
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &audio, ""), false);
    daemon.ready();

    let first = daemon.utterance(1);
    let mut got = acknowledged(&first);
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(got, vec![cmd("ceiling_fan", "turn_on", Value::Null), cmd("kitchen_light", "turn_on", Value::Null)]);
    for stage in ["stt", "nlu", "mqtt", "end_to_ack", "total"] {
        assert!(first["latency_ms"][stage].as_f64().is_some(), "no {stage} latency in {first}");
    }
    assert_eq!(acknowledged(&daemon.utterance(2)), vec![cmd("thermostat", "set_temperature", 21.into())]);
    assert_eq!(acknowledged(&daemon.utterance(3)), vec![cmd("living_room_blinds", "close", Value::Null)]);
    // "unlock the front door" waits; the spoken "confirm" sends it.
    let unlock = daemon.utterance(4);
    assert_eq!(unlock["commands"], serde_json::json!([]), "{unlock}");
    assert_eq!(unlock["needs_confirmation"][0]["action"], "unlock");
    let confirmed = daemon.wait_for("confirmation", Duration::from_secs(60), |l| l["decision"].is_string());
    assert_eq!(confirmed["decision"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["by"], "voice");
    assert_eq!(acknowledged(&confirmed), vec![cmd("front_door_lock", "unlock", Value::Null)]);
    let question = daemon.utterance(6);
    assert_eq!(question["commands"], serde_json::json!([]), "{question}");
    // One pass: the question, which yields no command, is not heard again
    // (`stt.retry_with_catalog_prompt` is off by default; `process --second-hearing` tests it).
    assert!(question["transcripts"].is_null(), "{question}");
    assert!(question["latency_ms"]["stt_retry"].is_null(), "{question}");
    let stopped = daemon.stopped();
    assert_eq!(stopped["drained"], true);
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 5, "exactly the five commands reach the devices");

    let records = audit_records(dir.path());
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"daemon_start"));
    assert_eq!(kinds.last(), Some(&"daemon_stop"));
    assert_eq!(kinds.iter().filter(|k| **k == "outcome").count(), 5, "{kinds:?}");
    let done = records.iter().find(|r| r["kind"] == "utterance_done").unwrap();
    assert!(done["latency_ms"]["end_to_ack"].as_f64().is_some(), "{done}");
    let first_utterance = records.iter().find(|r| r["kind"] == "utterance").unwrap();
    assert!(first_utterance["latency_ms"]["stt"].as_f64().is_some(), "{first_utterance}");
    assert_eq!(first_utterance["route"]["stt"]["where"], "local");
    assert!(records.iter().any(|r| r["kind"] == "confirmation" && r["decision"] == "confirmed"));
    let retried = records.iter().filter(|r| r["kind"] == "utterance" && r["transcripts"].is_array()).count();
    assert_eq!(retried, 0, "one reading each");
}

#[test]
fn a_confirmation_expires_unanswered_and_an_mqtt_confirmation_sends_the_next() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let recording = recording(
        dir.path(),
        "unlock",
        &[
            Part::Silence(0.3),
            Part::Say("unlock the front door"),
            Part::Silence(4.0),
            Part::Say("unlock the front door"),
            Part::Silence(4.0),
        ],
    );
    let audio = file_source(&recording, true);
    let config = config(dir.path(), &broker.url(), &audio, "[confirmation]\nwindow_ms = 1500\n");
    let mut daemon = Daemon::start(&config, false);
    daemon.ready();

    let expired = daemon.wait_for("expiry", Duration::from_secs(30), |l| l["decision"].is_string());
    assert_eq!(expired["decision"], "expired", "{expired}");
    assert_eq!(expired["confirmation"], 1);
    assert_eq!(expired["commands"], serde_json::json!([]));

    let second = daemon.utterance(2);
    assert_eq!(second["confirmation"], 2, "{second}");
    run_tool(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-t",
            "hearken/home/confirm",
            "-m",
            r#"{"id": 2, "decision": "confirm"}"#,
        ],
    );
    let confirmed = daemon.wait_for("confirmation", Duration::from_secs(10), |l| l["decision"].is_string());
    assert_eq!(confirmed["decision"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["by"], "mqtt");
    assert_eq!(acknowledged(&confirmed), vec![cmd("front_door_lock", "unlock", Value::Null)]);
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 1, "the expired unlock never reached the lock");
    let records = audit_records(dir.path());
    assert!(records.iter().any(|r| r["kind"] == "confirmation" && r["decision"] == "expired" && r["by"] == "timeout"));
    assert!(records.iter().any(|r| r["kind"] == "confirmation" && r["decision"] == "confirmed" && r["by"] == "mqtt"));
}

#[test]
fn killed_engines_are_restarted_and_the_next_utterance_works() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let recording = recording(
        dir.path(),
        "restart",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(6.0),
            Part::Say("turn off the kitchen light"),
            Part::Silence(3.0),
        ],
    );
    let metrics_port = free_port().unwrap();
    let audio = file_source(&recording, true);
    let config =
        config(dir.path(), &broker.url(), &audio, &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"));
    let mut daemon = Daemon::start(&config, false);
    let ready = daemon.ready();
    assert_eq!(acknowledged(&daemon.utterance(1)), vec![cmd("kitchen_light", "turn_on", Value::Null)]);
    // Both engines crash between two utterances.
    signal(ready["stt_pid"].as_u64().unwrap() as u32, "KILL");
    signal(ready["intent_pid"].as_u64().unwrap() as u32, "KILL");
    assert_eq!(acknowledged(&daemon.utterance(2)), vec![cmd("kitchen_light", "turn_off", Value::Null)]);
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("hearken_stage_latency_seconds_count{stage=\"stt\"} 2"), "{metrics}");
    assert!(metrics.contains("hearken_commands_total{outcome=\"acknowledged\"} 2"), "{metrics}");
    assert!(metrics.contains("hearken_host_memory_used_ratio 0."), "{metrics}");
    // The daemon itself (engines are separate processes) stays small: the
    // bar is 30 MB resident at idle; this debug build is checked after work.
    let resident_kib = hearken::host::resident_kib(daemon.child.id()).unwrap();
    assert!(resident_kib <= 30 * 1024, "daemon resident memory {resident_kib} KiB > 30 MB");
    let stopped = daemon.stopped();
    assert_eq!(stopped["restarts"]["stt"], 1, "{stopped}");
    assert_eq!(stopped["restarts"]["intent"], 1, "{stopped}");
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 2);
}

#[test]
fn with_one_core_busy_every_utterance_is_still_handled() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let _burner = hearken_testkit::testbed::CpuBurners::start(1).unwrap();
    let audio = file_source(&repo_file("devices/recordings/home-demo.wav"), false);
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &audio, ""), false);
    daemon.ready();
    let mut first = acknowledged(&daemon.utterance(1));
    first.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(first, vec![cmd("ceiling_fan", "turn_on", Value::Null), cmd("kitchen_light", "turn_on", Value::Null)]);
    assert_eq!(acknowledged(&daemon.utterance(2)), vec![cmd("thermostat", "set_temperature", 21.into())]);
    assert_eq!(acknowledged(&daemon.utterance(3)), vec![cmd("living_room_blinds", "close", Value::Null)]);
    assert_eq!(daemon.utterance(4)["needs_confirmation"][0]["action"], "unlock");
    let confirmed = daemon.wait_for("confirmation", Duration::from_secs(120), |l| l["decision"].is_string());
    assert_eq!(confirmed["decision"], "confirmed", "{confirmed}");
    assert_eq!(daemon.utterance(6)["commands"], serde_json::json!([]));
    let stopped = daemon.stopped();
    assert_eq!(stopped["drained"], true, "{stopped}");
    assert_eq!(stopped["dropped_utterances"], 0, "{stopped}");
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 5);
}

#[test]
fn a_daemon_killed_outright_takes_its_engines_with_it() {
    let _serial = serial();
    let (dir, broker, _devices) = rig();
    let audio = file_source(&repo_file("devices/recordings/home-demo.wav"), false);
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &audio, ""), false);
    let ready = daemon.ready();
    let engines = [ready["stt_pid"].as_u64().unwrap(), ready["intent_pid"].as_u64().unwrap()];
    // SIGKILL: no shutdown code of the daemon's runs; the engines notice on their own.
    signal(daemon.child.id(), "KILL");
    let running = |pid: u64| {
        // A zombie waiting for a reaper has stopped running.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engines.iter().any(|&pid| running(pid)) {
        assert!(std::time::Instant::now() < deadline, "engines {engines:?} outlived their daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_the_broker_down_a_command_is_not_sent_audited_and_never_replayed() {
    let _serial = serial();
    let (dir, mut broker, devices) = rig();
    let recording = recording(
        dir.path(),
        "down",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(8.0),
            Part::Say("turn off the kitchen light"),
            Part::Silence(1.0),
        ],
    );
    let audio = file_source(&recording, true);
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &audio, ""), false);
    daemon.ready();
    broker.stop();
    let first = daemon.utterance(1);
    assert_eq!(first["commands"][0]["outcome"], "not_sent", "{first}");
    broker.restart().unwrap();
    let second = daemon.utterance(2);
    assert_eq!(acknowledged(&second), vec![cmd("kitchen_light", "turn_off", Value::Null)], "{second}");
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 1, "the command that was not sent is never replayed");
    let records = audit_records(dir.path());
    assert!(records.iter().any(|r| r["kind"] == "outcome" && r["outcome"] == "not_sent" && r["action"] == "turn_on"));
}

#[test]
fn sigterm_drains_what_was_heard_and_flushes_the_audit_log() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let speech = synthesize(dir.path(), "light.wav", "turn on the kitchen light");
    let samples = hearken::audio::read_wav(&speech).unwrap().samples;
    let mut pcm: Vec<u8> = Vec::new();
    for s in samples.iter().chain(std::iter::repeat_n(&0.0, 16 * 800)) {
        pcm.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
    }
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), "source = \"stdin\"", ""), true);
    daemon.ready();
    let mut stdin = daemon.child.stdin.take().unwrap();
    stdin.write_all(&pcm).unwrap();
    stdin.flush().unwrap();
    // The utterance is heard (trailing silence included) but not yet handled: stop now.
    std::thread::sleep(Duration::from_millis(300));
    signal(daemon.child.id(), "TERM");
    let line = daemon.utterance(1);
    assert_eq!(acknowledged(&line), vec![cmd("kitchen_light", "turn_on", Value::Null)], "{line}");
    let stopped = daemon.stopped();
    assert_eq!(stopped["drained"], true);
    drop(stdin);
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 1);
    let records = audit_records(dir.path());
    assert_eq!(records.last().unwrap()["kind"], "daemon_stop");
    assert!(records.iter().any(|r| r["kind"] == "outcome" && r["outcome"] == "acknowledged"));
}

#[test]
fn malformed_configs_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = repo_file("devices/home.toml");
    let base = format!("catalog = {:?}\n", catalog.to_str().unwrap());
    let cases = [
        ("[audio]\nend_silense_ms = 300\n", "end_silense_ms"),
        ("[audio]\nsource = \"file\"\n", "audio.file"),
        ("[broker]\nurl = \"localhost\"\n", "broker.url"),
        ("[activation]\nmode = \"clap\"\n", "clap"),
        ("[confirmation]\nwindow_ms = \"ten\"\n", "window_ms"),
        ("[metrics]\nlisten = \"everywhere\"\n", "metrics.listen"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = write_file(dir.path(), &format!("bad{i}.toml"), &format!("{base}{text}"));
        for args in [vec!["config", "check", path.to_str().unwrap()], vec!["run", "--config", path.to_str().unwrap()]] {
            let out = hearken(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains(field), "{args:?} should name {field}: {}", stderr(&out));
        }
    }
    // A catalog that does not exist is named too.
    let path = write_file(dir.path(), "nocatalog.toml", "catalog = \"missing.toml\"\n");
    let out = hearken(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.toml"), "{}", stderr(&out));
    // The default config, pointed at a real catalog, passes.
    let default = stdout(&hearken(&["config", "default"]));
    let text = default.replace("catalog = \"/etc/hearken/catalog.toml\"", &base);
    let path = write_file(dir.path(), "default.toml", &text);
    let out = hearken(&["config", "check", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&out)).unwrap()["ok"], true);
}

#[test]
fn process_prints_one_line_per_utterance_without_mqtt_and_names_bad_files() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    whisper_model();
    intent_model();
    let corrupt = write_file(dir.path(), "corrupt.wav", "RIFF....WAVEfmt nonsense");
    let recording = repo_file("devices/recordings/home-demo.wav");
    let out = hearken(&[
        "process",
        "--catalog",
        repo_file("devices/home.toml").to_str().unwrap(),
        "--threads",
        "2",
        recording.to_str().unwrap(),
        corrupt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a bad file makes the exit status 1: {}", stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7, "six utterances and one error: {lines:#?}");
    assert_eq!(lines[0]["commands"].as_array().unwrap().len(), 2, "{}", lines[0]);
    assert_eq!(lines[3]["needs_confirmation"][0]["device"], "front_door_lock");
    for line in &lines[..6] {
        for stage in ["vad", "stt", "nlu", "total"] {
            assert!(line["latency_ms"][stage].as_f64().is_some(), "{line}");
        }
        assert!(line["end_ms"].as_u64() > line["start_ms"].as_u64());
    }
    assert!(lines[6]["error"].as_str().unwrap().contains("corrupt.wav"), "{}", lines[6]);
    // One pass by default: one transcription each.
    assert!(lines.iter().all(|l| l["transcripts"].is_null()), "{lines:#?}");

    let catalog = repo_file("devices/home.toml");
    let args = ["process", "--catalog", catalog.to_str().unwrap(), "--threads", "2", "--second-hearing"];
    let out = hearken(&[&args[..], &[recording.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let again: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(again.len(), 6, "{again:#?}");
    // The question yields no command: heard twice more, primed.
    assert_eq!(again[5]["transcripts"].as_array().map(Vec::len), Some(3), "{}", again[5]);
    assert!(again[0]["transcripts"].is_null(), "{}", again[0]);
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_is_at_most_2() {
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_file("systemd/hearken.service")).unwrap();
    let path = unit_for_analysis(dir.path(), &unit, &hearken_bin());
    let verify = systemd_verify(&path);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let security =
        Command::new("systemd-analyze").args(["security", "--offline=true", path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hearken.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
    for directive in
        ["Type=notify", "WatchdogSec=", "ExecStartPre=", "User=hearken", "ProtectSystem=strict", "DevicePolicy=closed"]
    {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
}

#[test]
fn push_to_talk_and_wake_phrase_decide_which_utterances_are_commands() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let recording = recording(
        dir.path(),
        "ptt",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(3.0),
            Part::Say("turn off the kitchen light"),
            Part::Silence(1.0),
        ],
    );
    // Push-to-talk: the first command is not for hearken, the one after the trigger is.
    let audio = file_source(&recording, true);
    let config = config(dir.path(), &broker.url(), &audio, "[activation]\nmode = \"mqtt\"\n");
    let mut daemon = Daemon::start(&config, false);
    daemon.ready();
    let first = daemon.utterance(1);
    assert_eq!(first["activated"], false, "{first}");
    assert_eq!(first["commands"], serde_json::json!(null), "{first}");
    run_tool(
        "mosquitto_pub",
        &["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-t", "hearken/home/listen", "-m", "1"],
    );
    let second = daemon.utterance(2);
    assert_eq!(acknowledged(&second), vec![cmd("kitchen_light", "turn_off", Value::Null)], "{second}");
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    let records = audit_records(dir.path());
    let ignored = records.iter().find(|r| r["kind"] == "utterance" && r["activated"] == false).unwrap();
    assert!(ignored.get("text").is_none(), "speech not meant for hearken is audited without its words: {ignored}");

    // Wake phrase: only "hey hearken, …" is a command.
    let recording = recording_with_wake(dir.path());
    let audio = file_source(&recording, false);
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    let config = self::config(dir.path(), &broker.url(), &audio, "[activation]\nmode = \"wake_phrase\"\n");
    let mut daemon = Daemon::start(&config, false);
    daemon.ready();
    assert_eq!(daemon.utterance(1)["activated"], false);
    let woken = daemon.utterance(2);
    assert_eq!(acknowledged(&woken), vec![cmd("kitchen_light", "turn_on", Value::Null)], "{woken}");
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    assert_eq!(devices.received(), 2);
}

fn recording_with_wake(dir: &Path) -> PathBuf {
    recording(
        dir,
        "wake",
        &[
            Part::Silence(0.3),
            Part::Say("turn off the kitchen light"),
            Part::Silence(1.0),
            Part::Say("hey hearken, turn on the kitchen light"),
            Part::Silence(1.0),
        ],
    )
}
