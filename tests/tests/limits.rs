//! The limits (`[limits]` and the engines' `--max-*` flags), each at its
//! boundary: the last request inside it is served, the first past it is
//! refused with an error that names the limit. Real daemon, real engines,
//! real Mosquitto and simulated devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use hearken::catalog::Command;
use hearken::local::EngineProcess;
use hearken::mqtt::{BrokerOptions, CommandLink, Outcome};
use hearken_testkit::simulator::{Simulator, SimulatorConfig};
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::rig::*;
use hearken_tests::*;
use serde_json::{json, Value};

/// Reports with a `line`, by line number.
fn by_line(reports: &[Value], line: u64) -> &Value {
    reports.iter().find(|r| r["line"] == line).unwrap_or_else(|| panic!("no report for line {line}: {reports:?}"))
}

#[test]
fn text_requests_past_each_limit_are_refused_with_the_limits_name() {
    let _one = serial();
    let (dir, broker, _devices) = rig();
    let exactly_80 = format!("{:<80}", "turn on the coffee machine");
    let past_80 = format!("{:<81}", "turn off the coffee machine");
    assert_eq!((exactly_80.chars().count(), past_80.chars().count()), (80, 81));
    let lines = [
        "turn on the tv".to_owned(),
        "turn off the tv".to_owned(),
        "turn on the tv".to_owned(),
        exactly_80,
        past_80.clone(),
        "turn off the kitchen light and the bedroom light".to_owned(),
        "turn off the kitchen light and the bedroom light and the porch light".to_owned(),
        "unlock the front door".to_owned(),
        "yes".to_owned(),
        "open the garage door".to_owned(),
        "yes".to_owned(),
    ];
    let input = write_file(dir.path(), "requests.txt", &(lines.join("\n") + "\n"));
    let audio = format!("source = \"text\"\nfile = {:?}", input.to_str().unwrap());
    let limits = "[limits]\nmax_request_chars = 80\nmax_commands = 2\ndevice_commands_per_minute = 2\n\
                  confirm_commands_per_minute = 1\n";
    let config = config(dir.path(), &broker.url(), &audio, limits);
    let mut daemon = Daemon::start(&config, false);
    daemon.ready();
    daemon.stopped();
    let reports = daemon.seen.clone();
    assert_eq!(daemon.exit_code(), 0);

    // Two commands to the tv within the minute; the third is not sent, and says why.
    assert_eq!(acknowledged(by_line(&reports, 1)), vec![cmd("tv", "turn_on", Value::Null)]);
    assert_eq!(acknowledged(by_line(&reports, 2)), vec![cmd("tv", "turn_off", Value::Null)]);
    let third = &by_line(&reports, 3)["commands"][0];
    assert_eq!(third["outcome"], "not_sent", "{third}");
    let reason = third["reason"].as_str().unwrap();
    assert!(reason.contains("2 commands to tv") && reason.contains("limits.device_commands_per_minute"), "{reason}");

    // 80 characters are taken, 81 are refused whole.
    assert_eq!(acknowledged(by_line(&reports, 4)), vec![cmd("coffee_machine", "turn_on", Value::Null)]);
    let long = by_line(&reports, 5);
    assert_eq!(long["error"]["stage"], "limits", "{long}");
    assert!(long["error"]["message"].as_str().unwrap().contains("limits.max_request_chars (80"), "{long}");
    assert_eq!(long["commands"], json!([]));

    // Two commands in one utterance are taken; three are refused whole: nothing is sent.
    assert_eq!(acknowledged(by_line(&reports, 6)).len(), 2, "{}", by_line(&reports, 6));
    let three = by_line(&reports, 7);
    assert!(three["error"]["message"].as_str().unwrap().contains("limits.max_commands is 2"), "{three}");
    assert_eq!(three["commands"], json!([]));

    // One confirm-class command per minute: the unlock goes out once confirmed, the garage does not.
    let decisions: Vec<&Value> = reports.iter().filter(|r| r["decision"] == "confirmed").collect();
    assert_eq!(decisions.len(), 2, "{reports:?}");
    assert_eq!(acknowledged(decisions[0]), vec![cmd("front_door_lock", "unlock", Value::Null)]);
    let garage = &decisions[1]["commands"][0];
    assert_eq!((garage["device"].as_str(), garage["outcome"].as_str()), (Some("garage_door"), Some("not_sent")));
    assert!(garage["reason"].as_str().unwrap().contains("limits.confirm_commands_per_minute"), "{garage}");

    // Every refusal is in the audit log, which verifies and follows its schema.
    let records = audit_records(dir.path());
    let refused = records.iter().filter(|r| r["kind"] == "outcome" && r["outcome"] == "not_sent").count();
    assert_eq!(refused, 2);
    assert!(records.iter().any(|r| r["kind"] == "utterance" && r["error"]["stage"] == "limits" && r["line"] == 5));
}

#[test]
fn a_text_line_of_any_length_is_held_only_up_to_the_limit() {
    let _one = serial();
    let (dir, broker, _devices) = rig();
    // 5 MB on one line, then a request: the daemon refuses the first and serves the second.
    let mut input = "x".repeat(5_000_000);
    input.push_str("\nturn on the porch light\n");
    let input = write_file(dir.path(), "requests.txt", &input);
    let audio = format!("source = \"text\"\nfile = {:?}", input.to_str().unwrap());
    let mut daemon = Daemon::start(&config(dir.path(), &broker.url(), &audio, ""), false);
    daemon.ready();
    daemon.stopped();
    let reports = daemon.seen.clone();
    let pid = daemon.child.id();
    assert_eq!(daemon.exit_code(), 0, "daemon {pid}");
    let long = by_line(&reports, 1);
    assert!(long["error"]["message"].as_str().unwrap().contains("limits.max_request_chars (500"), "{long}");
    // Only the first 500 characters are reported (and audited): the rest was never held.
    assert_eq!(long["text"].as_str().unwrap().len(), 500);
    assert_eq!(acknowledged(by_line(&reports, 2)), vec![cmd("porch_light", "turn_on", Value::Null)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_link_holds_at_most_its_in_flight_limit() {
    let broker = Mosquitto::start().unwrap();
    let catalog = Arc::new(mixed_catalog(300));
    let options = BrokerOptions::new(broker.url());
    // Devices that never answer: every command stays in flight for its whole budget.
    let silent = SimulatorConfig { drop_rate: 1.0, ..SimulatorConfig::default() };
    let simulator = Simulator::start(&options, catalog.clone(), silent).unwrap();
    assert!(simulator.wait_ready(1, Duration::from_secs(10)).await);
    let link = CommandLink::start_bounded(&options, catalog.clone(), 2).unwrap();
    link.wait_connected(Duration::from_secs(5)).await.unwrap();
    let device = catalog.devices.iter().find(|d| d.protocol == hearken::catalog::protocol::Protocol::Hearken).unwrap();
    let command = Command { device: device.id.clone(), action: "turn_on".into(), value: None };
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let (link, command) = (link.clone(), command.clone());
            tokio::spawn(async move { link.send(&command).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for send in sends {
        outcomes.push(send.await.unwrap());
    }
    let timeouts = outcomes.iter().filter(|d| d.outcome == Outcome::Timeout).count();
    let refused: Vec<_> = outcomes.iter().filter(|d| d.outcome == Outcome::NotSent).collect();
    assert_eq!((timeouts, refused.len()), (2, 1), "{outcomes:?}");
    assert!(refused[0].reason.as_deref().unwrap().contains("in-flight limit: 2"), "{:?}", refused[0]);
    assert_eq!(link.stats().in_flight_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Once they are resolved, the link takes commands again.
    assert_eq!(link.send(&command).await.unwrap().outcome, Outcome::Timeout);
}

async fn post(url: &str, token: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn wav_form(samples: usize) -> Vec<u8> {
    let wav = hearken::audio::encode_wav16k(&vec![0.0; samples]);
    let mut body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n".to_vec();
    body.extend_from_slice(&wav);
    body.extend_from_slice(b"\r\n--B--\r\n");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_refuse_bodies_clips_and_completions_past_their_limits() {
    hearken_bin();
    let startup = Duration::from_secs(120);
    let model = whisper_model().display().to_string();
    // 1 s of audio at most; 40,000 bytes of body at most (1 s of 16-bit audio is 32,044 bytes of WAV).
    let args: Vec<String> =
        ["--model", &model, "--threads", "1", "--max-audio-ms", "1000", "--max-body-bytes", "40000"]
            .map(String::from)
            .into();
    let stt = EngineProcess::start("hearken-whisper", &args, startup).await.unwrap();
    let form = "multipart/form-data; boundary=B";
    let path = "/v1/audio/transcriptions";
    let (status, body) = post(&stt.url, &stt.token, path, form, wav_form(16_000)).await;
    assert_eq!(status, 200, "1000 ms is inside the limit: {body}");
    let (status, body) = post(&stt.url, &stt.token, path, form, wav_form(16_016)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1001 ms") && body.contains("--max-audio-ms"), "{body}");
    let (status, _) = post(&stt.url, &stt.token, path, form, wav_form(24_000)).await;
    assert_eq!(status, 413, "a body past --max-body-bytes");
    let out = std::process::Command::new(hearken::local::engine_binary("hearken-whisper"))
        .args(["--model", &model, "--max-audio-ms", "30001"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "more than whisper's 30 s window is a usage error");

    let llm = intent_model().display().to_string();
    let args: Vec<String> = ["--model", &llm, "--threads", "1", "--max-tokens", "8"].map(String::from).into();
    let intent = EngineProcess::start("hearken-llama", &args, startup).await.unwrap();
    let chat = |tokens: u64| {
        serde_json::to_vec(&json!({"messages": [{"role": "user", "content": "say hi"}], "max_tokens": tokens})).unwrap()
    };
    let path = "/v1/chat/completions";
    let (status, body) = post(&intent.url, &intent.token, path, "application/json", chat(8)).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() <= 8, "{answer}");
    let (status, body) = post(&intent.url, &intent.token, path, "application/json", chat(9)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_tokens 9") && body.contains("--max-tokens"), "{body}");
    let huge = vec![b' '; 1024 * 1024 + 1];
    let (status, _) = post(&intent.url, &intent.token, path, "application/json", huge).await;
    assert_eq!(status, 413, "a body past the default --max-body-bytes (1 MiB)");
}

#[test]
fn limits_out_of_range_stop_the_daemon_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (limits, field) in [
        ("max_commands = 0", "limits.max_commands"),
        ("max_commands = 33", "limits.max_commands"),
        ("max_request_chars = 0", "limits.max_request_chars"),
        ("mqtt_in_flight = 0", "limits.mqtt_in_flight"),
    ] {
        let config = config(dir.path(), "mqtt://127.0.0.1:1", "source = \"text\"", &format!("[limits]\n{limits}\n"));
        let out = hearken(&["config", "check", config.to_str().unwrap()]);
        assert!(!out.status.success(), "{limits} accepted");
        assert!(stderr(&out).contains(field), "{limits}: {}", stderr(&out));
    }
}
