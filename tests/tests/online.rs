//! The online fallback against real servers: the "online API" is a second
//! `hearken-whisper` / `hearken-llama` on another loopback port with its own
//! token, and with an artificial delay or an injected fault where a test
//! needs one (`--delay-ms`, `--fault`). What left the box is counted on the
//! server's `/stats` (connections accepted, requests received).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearken::catalog::Catalog;
use hearken::config::{OnlineConfig, OnlineEndpointConfig, Privacy, RetryConfig};
use hearken::intent::ChatClient;
use hearken::intent::{Interpreter, InterpreterConfig};
use hearken::online::router::Reason;
use hearken::online::{Online, OnlineError};
use hearken_testkit::testbed::free_port;
use hearken_tests::rig::*;
use hearken_tests::*;
use serde_json::Value;

/// A real engine standing in for an online API.
struct OnlineServer {
    child: Child,
    port: u16,
    key_file: PathBuf,
    /// `/stats` reads so far: each is a connection of its own.
    probes: std::cell::Cell<u64>,
}

impl OnlineServer {
    /// Starts `engine` (`hearken-whisper` or `hearken-llama`) on `port` with
    /// its own token (written to a key file in `dir`) and `extra` flags.
    fn start(dir: &Path, engine: &str, port: u16, extra: &[&str]) -> OnlineServer {
        let binary = hearken_bin().with_file_name(engine);
        let model = if engine == "hearken-whisper" { whisper_model() } else { intent_model() };
        let token = format!("online-{engine}-{port}-token");
        let key_file = write_file(dir, &format!("{engine}-{port}.key"), &token);
        let mut child = Command::new(binary)
            .args(["--model", model.to_str().unwrap(), "--threads", "1", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("HEARKEN_ENGINE_TOKEN", &token)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(first.contains("listening"), "{engine} did not start: {first}");
        OnlineServer { child, port, key_file, probes: std::cell::Cell::new(0) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `/stats`: connections accepted (other than this test's own reads of
    /// `/stats`) and API requests received so far.
    fn stats(&self) -> Value {
        self.probes.set(self.probes.get() + 1);
        let answer = http_get(self.port, "/stats");
        let mut stats: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        stats["connections"] = (stats["connections"].as_u64().unwrap() - self.probes.get()).into();
        stats
    }

    fn endpoint(&self, model: &str) -> OnlineEndpointConfig {
        OnlineEndpointConfig {
            api_key_file: Some(self.key_file.clone()),
            timeout_ms: 10_000,
            ..OnlineEndpointConfig::new(&self.url(), model)
        }
    }

    /// The `[online.stt]`-style TOML table body for this server.
    fn toml(&self, model: &str) -> String {
        format!(
            "url = \"{}\"\nmodel = \"{model}\"\napi_key_file = {:?}\ntimeout_ms = 30000\n",
            self.url(),
            self.key_file
        )
    }
}

impl Drop for OnlineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon config section for the online fallback.
fn online_section(privacy: &str, budget_ms: u64, stt: Option<&str>, intent: Option<&str>) -> String {
    let mut text = format!(
        "[online]\nprivacy = \"{privacy}\"\nbudget_ms = {budget_ms}\ndeadline_ms = 20000\n\
         cpu_threshold_percent = 10000\nmemory_threshold_percent = 10000\n\n"
    );
    if let Some(stt) = stt {
        text.push_str(&format!("[online.stt]\n{stt}\n"));
    }
    if let Some(intent) = intent {
        text.push_str(&format!("[online.intent]\n{intent}\n"));
    }
    text
}

/// Five commands spoken back to back; the daemon reads them as fast as it can
/// decode, so they arrive at the worker at once.
fn burst(dir: &Path) -> PathBuf {
    recording(
        dir,
        "burst",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(0.8),
            Part::Say("turn off the porch light"),
            Part::Silence(0.8),
            Part::Say("start the robot vacuum"),
            Part::Silence(0.8),
            Part::Say("turn on the coffee machine"),
            Part::Silence(0.8),
            Part::Say("turn off the ceiling fan"),
            Part::Silence(1.0),
        ],
    )
}

/// Runs the daemon over `recording` to its end and returns its utterance lines.
fn run_daemon(dir: &Path, broker: &str, recording: &Path, extra: &str) -> Vec<Value> {
    let audio = format!("{}\nqueue_utterances = 8", file_source(recording, false));
    let mut daemon = Daemon::start(&config(dir, broker, &audio, extra), false);
    daemon.ready();
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    daemon_utterances(dir)
}

/// The utterance records of the audit log (verified and schema-checked).
fn daemon_utterances(dir: &Path) -> Vec<Value> {
    audit_records(dir).into_iter().filter(|r| r["kind"] == "utterance").collect()
}

fn count_route(utterances: &[Value], stage: &str, place: &str) -> usize {
    utterances.iter().filter(|u| u["route"][stage]["where"] == place).count()
}

/// Online tries that went out for `stage` to `endpoint`, over all utterances.
fn sent(utterances: &[Value], stage: &str, endpoint: &str) -> u64 {
    utterances
        .iter()
        .flat_map(|u| u["route"][stage]["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["endpoint"] == endpoint && a["sent"] == true)
        .count() as u64
}

#[test]
fn a_burst_sends_the_overflow_online_and_keeps_the_rest_local() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let stt = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &["--delay-ms", "100"]);
    let intent = OnlineServer::start(dir.path(), "hearken-llama", free_port().unwrap(), &["--delay-ms", "100"]);
    let extra = online_section("any", 400, Some(&stt.toml("whisper-1")), Some(&intent.toml("smollm2")));
    let utterances = run_daemon(dir.path(), &broker.url(), &burst(dir.path()), &extra);

    assert_eq!(utterances.len(), 5);
    let local = count_route(&utterances, "stt", "local");
    let online = count_route(&utterances, "stt", "online");
    assert!(local >= 1 && online >= 1, "local {local}, online {online}: {utterances:#?}");
    assert!(
        utterances
            .iter()
            .all(|u| u["route"]["stt"]["reason"] == "within_budget" || u["route"]["stt"]["reason"] == "over_budget"),
        "{utterances:#?}"
    );
    // What the audit log says went out is what the online server received.
    assert_eq!(stt.stats()["requests"].as_u64().unwrap(), sent(&utterances, "stt", "primary"));
    assert_eq!(intent.stats()["requests"].as_u64().unwrap(), sent(&utterances, "intent", "primary"));
    // Every utterance was served: five commands acknowledged.
    assert_eq!(devices.received(), 5);
}

#[test]
fn under_never_not_one_request_leaves_and_under_text_no_audio_leaves() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let stt = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let intent = OnlineServer::start(dir.path(), "hearken-llama", free_port().unwrap(), &[]);
    let five = burst(dir.path());

    // `never`, and a budget nothing can meet: everything stays local, queued.
    let extra = online_section("never", 0, Some(&stt.toml("whisper-1")), Some(&intent.toml("smollm2")));
    let utterances = run_daemon(dir.path(), &broker.url(), &five, &extra);
    assert_eq!(utterances.len(), 5);
    assert!(utterances.iter().all(|u| u["route"]["stt"] == serde_json::json!({"where": "local", "reason": "privacy"})));
    assert_eq!(stt.stats()["connections"], 0, "a connection reached the online speech API under `never`");
    assert_eq!(intent.stats()["connections"], 0, "a connection reached the online intent API under `never`");

    // `text`: transcripts may go, audio may not. The first request leaves
    // something to the model, so its transcript goes online (budget 0).
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    let mixed = recording(
        dir.path(),
        "text",
        &[
            Part::Silence(0.3),
            Part::Say(MODEL_REQUEST),
            Part::Silence(0.8),
            Part::Say("turn off the porch light"),
            Part::Silence(1.0),
        ],
    );
    let extra = online_section("text", 0, Some(&stt.toml("whisper-1")), Some(&intent.toml("smollm2")));
    let utterances = run_daemon(dir.path(), &broker.url(), &mixed, &extra);
    assert_eq!(utterances.len(), 2);
    assert!(utterances.iter().all(|u| u["route"]["stt"] == serde_json::json!({"where": "local", "reason": "privacy"})));
    assert_eq!(stt.stats()["connections"], 0, "audio reached the online speech API under `text`");
    assert_eq!(utterances[0]["route"]["intent"]["where"], "online", "{utterances:#?}");
    assert_eq!(utterances[1]["route"]["intent"]["reason"], "words_only");
    assert!(sent(&utterances, "intent", "primary") >= 1);
    assert_eq!(intent.stats()["requests"].as_u64().unwrap(), sent(&utterances, "intent", "primary"));
    assert!(devices.received() >= 6);
}

#[test]
fn a_killed_local_engine_sends_everything_online_until_it_is_back() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let stt = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let recording = recording(
        dir.path(),
        "outage",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(3.0),
            Part::Say("turn off the kitchen light"),
            Part::Silence(12.0),
            Part::Say("turn on the porch light"),
            Part::Silence(2.0),
        ],
    );
    // A long first restart delay (8 s): the second utterance meets the engine
    // down, the third the restarted one.
    let extra = format!("{}\n", online_section("any", 60_000, Some(&stt.toml("whisper-1")), None));
    let config = config(dir.path(), &broker.url(), &file_source(&recording, true), &extra);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("restart_backoff_min_ms = 200", "restart_backoff_min_ms = 8000");
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(&config, false);
    let ready = daemon.ready();
    let first = daemon.utterance(1);
    assert_eq!(first["route"]["stt"]["where"], "local", "{first}");
    signal(ready["stt_pid"].as_u64().unwrap() as u32, "KILL");
    let second = daemon.utterance(2);
    assert_eq!(
        second["route"]["stt"],
        serde_json::json!({"where": "online", "reason": "local_down", "attempts": second["route"]["stt"]["attempts"]})
    );
    assert_eq!(acknowledged(&second), vec![cmd("kitchen_light", "turn_off", Value::Null)]);
    let third = daemon.utterance(3);
    assert_eq!(third["route"]["stt"]["where"], "local", "the restarted engine takes over again: {third}");
    daemon.stopped();
    assert_eq!(stt.stats()["requests"], 1);
    assert_eq!(devices.received(), 3);
}

#[test]
fn a_failing_primary_falls_to_the_backup_and_its_breaker_opens_then_closes() {
    let _serial = serial();
    let (dir, broker, devices) = rig();
    let primary_port = free_port().unwrap();
    let failing = OnlineServer::start(dir.path(), "hearken-whisper", primary_port, &["--fault", "status500"]);
    let backup = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let recording = recording(
        dir.path(),
        "breaker",
        &[
            Part::Silence(0.3),
            Part::Say("turn on the kitchen light"),
            Part::Silence(1.5),
            Part::Say("turn off the kitchen light"),
            Part::Silence(7.0),
            Part::Say("turn on the porch light"),
            Part::Silence(2.0),
        ],
    );
    // Budget 0: every utterance's speech goes online.
    let stt = format!("{}[online.stt.backup]\n{}", failing.toml("whisper-1"), backup.toml("whisper-1"));
    let extra = format!(
        "{}[online.retry]\nbackoff_retries = 2\nbackoff_base_ms = 20\nbackoff_max_ms = 40\nbreaker_failures = 3\nbreaker_open_ms = 4000\n",
        online_section("any", 0, Some(&stt), None)
    );
    let config = config(dir.path(), &broker.url(), &file_source(&recording, true), &extra);
    let mut daemon = Daemon::start(&config, false);
    daemon.ready();

    let first = daemon.utterance(1);
    let tries = |u: &Value| -> Vec<String> {
        u["route"]["stt"]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{}:{}", a["endpoint"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
            .collect()
    };
    // First try, the immediate retry, a backoff retry (the third failure opens
    // the breaker), the skipped second backoff retry, then the backup.
    assert_eq!(
        tries(&first),
        ["primary:status_500", "primary:status_500", "primary:status_500", "primary:breaker_open", "backup:ok"]
    );
    let second = daemon.utterance(2);
    assert_eq!(tries(&second), ["primary:breaker_open", "backup:ok"], "an open breaker sends nothing");
    assert_eq!(failing.stats()["requests"], 3);

    // The primary recovers on the same address; after breaker_open_ms one probe goes through and closes it.
    drop(failing);
    let healthy = OnlineServer::start(dir.path(), "hearken-whisper", primary_port, &[]);
    let third = daemon.utterance(3);
    assert_eq!(tries(&third), ["primary:ok"], "{third}");
    daemon.stopped();
    assert_eq!(healthy.stats()["requests"], 1);
    assert_eq!(devices.received(), 3);
}

/// Each online failure class against a real server: classified, retried
/// when a retry can help, handed to the backup, and nothing sent after the deadline.
#[test]
fn online_errors_are_classified_retried_and_bounded_by_the_deadline() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let speech = hearken::audio::read_wav(&synthesize(dir.path(), "lamp.wav", "turn on the kitchen light")).unwrap();
    let catalog = Catalog::load(&repo_file("devices/home.toml")).unwrap();
    let retry =
        RetryConfig { backoff_base_ms: 10, backoff_max_ms: 20, breaker_failures: 100, ..RetryConfig::default() };
    let backup = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let transcribe = |primary: OnlineEndpointConfig, deadline: Duration| {
        let mut primary = primary;
        primary.backup = Some(Box::new(backup.endpoint("whisper-1")));
        let config =
            OnlineConfig { privacy: Privacy::Any, stt: Some(primary), retry: retry.clone(), ..OnlineConfig::default() };
        let online = Online::from_config(&config, &catalog).unwrap();
        runtime.block_on(online.transcribe(
            &speech.samples,
            hearken::stt::Priming::NONE,
            tokio::time::Instant::now() + deadline,
        ))
    };

    for (fault, expected) in [
        ("status429", vec!["primary:status_429"; 4]),
        ("status500", vec!["primary:status_500"; 4]),
        ("malformed-json", vec!["primary:malformed"]),
        ("off-schema", vec!["primary:off_schema"]),
    ] {
        let server = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &["--fault", fault]);
        let served = transcribe(server.endpoint("whisper-1"), Duration::from_secs(20));
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.push("backup:ok".to_owned());
        assert_eq!(outcomes(&served), want, "{fault}");
        assert_eq!(normalize_transcript(&served.result.unwrap().text), "turn on the kitchen light");
        assert_eq!(server.stats()["requests"].as_u64().unwrap() as usize, expected.len(), "{fault}");
    }

    // A wrong API key: no retry on that endpoint.
    let server = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let wrong_key = write_file(dir.path(), "wrong.key", "not-the-servers-token");
    let served = transcribe(
        OnlineEndpointConfig { api_key_file: Some(wrong_key), ..server.endpoint("whisper-1") },
        Duration::from_secs(20),
    );
    assert_eq!(outcomes(&served), ["primary:unauthorized", "backup:ok"]);

    // A slow endpoint is abandoned at the deadline, and nothing else is sent.
    let slow = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &["--delay-ms", "5000"]);
    let before = backup.stats()["requests"].as_u64().unwrap();
    let served = transcribe(slow.endpoint("whisper-1"), Duration::from_millis(800));
    assert!(
        matches!(served.result, Err(OnlineError::DeadlinePassed { stage: "stt", attempts: 1 })),
        "{:?}",
        served.result
    );
    assert_eq!(outcomes(&served), ["primary:deadline"]);
    assert_eq!(slow.stats()["requests"], 1);
    assert_eq!(backup.stats()["requests"].as_u64().unwrap(), before, "nothing went to the backup after the deadline");

    // The intent API: a reply that commands a device outside the catalog is
    // refused like the local engine's, and the backup's answer is validated too.
    let off_schema = OnlineServer::start(dir.path(), "hearken-llama", free_port().unwrap(), &["--fault", "off-schema"]);
    let intent_backup = OnlineServer::start(dir.path(), "hearken-llama", free_port().unwrap(), &[]);
    let mut primary = off_schema.endpoint("smollm2");
    // A fresh engine first reads the whole catalog prompt, on one thread of a busy box: give it time.
    let slow_first = |endpoint: OnlineEndpointConfig| OnlineEndpointConfig { timeout_ms: 120_000, ..endpoint };
    primary.backup = Some(Box::new(slow_first(intent_backup.endpoint("smollm2"))));
    let config = OnlineConfig { privacy: Privacy::Text, intent: Some(primary), retry, ..OnlineConfig::default() };
    let online = Online::from_config(&config, &catalog).unwrap();
    let local = ChatClient::new("http://127.0.0.1:9", None, "local", Duration::from_secs(1)).unwrap();
    let interpreter = Interpreter::new(catalog.clone(), local, InterpreterConfig::default());
    let request = MODEL_REQUEST;
    assert!(interpreter.preview(request).asks_model, "the request must leave something to the model");
    let served = runtime.block_on(online.interpret(
        &interpreter,
        &interpreter.plan(request),
        tokio::time::Instant::now() + Duration::from_secs(150),
    ));
    assert_eq!(outcomes(&served), ["primary:off_schema", "backup:ok"]);
    let interpretation = served.result.unwrap();
    for command in &interpretation.commands {
        catalog.check(command).unwrap();
    }
}

/// `endpoint:outcome` of every try.
fn outcomes<T>(served: &hearken::online::Served<T>) -> Vec<String> {
    served.attempts.iter().map(|a| format!("{}:{}", a.endpoint, a.outcome)).collect()
}

/// A request of the home catalog that the words alone do not settle.
const MODEL_REQUEST: &str = "set the kitchen light to 300";

#[test]
fn per_device_never_keeps_the_intent_stage_local() {
    let catalog = Catalog::load(&repo_file("devices/home.toml")).unwrap();
    let endpoint = OnlineEndpointConfig { timeout_ms: 1000, ..OnlineEndpointConfig::new("http://127.0.0.1:9", "m") };
    let mut config = OnlineConfig {
        privacy: Privacy::Any,
        intent: Some(endpoint.clone()),
        stt: Some(endpoint),
        ..OnlineConfig::default()
    };
    config.devices.insert("front_door_lock".to_owned(), Privacy::Never);
    let online = Online::from_config(&config, &catalog).unwrap();
    assert_eq!(online.intent_refusal(&["front_door_lock".to_owned()]), Some(Reason::DeviceLocalOnly));
    assert_eq!(online.intent_refusal(&["kitchen_light".to_owned()]), None);
    assert_eq!(online.stt_refusal(), None);
    config.devices.insert("no_such_device".to_owned(), Privacy::Never);
    let error = Online::from_config(&config, &catalog).err().unwrap();
    assert!(error.to_string().contains("no_such_device"), "{error}");
}

/// An engine serving several clients computes one request at a time; a
/// request whose client gave up while it waited is dropped, not computed.
#[test]
fn requests_abandoned_while_waiting_are_never_computed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let server = OnlineServer::start(dir.path(), "hearken-whisper", free_port().unwrap(), &[]);
    let token = std::fs::read_to_string(&server.key_file).unwrap();
    let long =
        "turn on the kitchen light and then turn off the porch light and start the robot vacuum and open the blinds";
    let speech = hearken::audio::read_wav(&synthesize(dir.path(), "long.wav", long)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let send = |timeout: Duration| {
        let client = hearken::stt::SttClient::new(&server.url(), Some(token.clone()), timeout).unwrap();
        let samples = speech.samples.clone();
        async move { client.transcribe(&samples, hearken::stt::Priming::NONE).await }
    };
    runtime.block_on(async {
        let patient = tokio::spawn(send(Duration::from_secs(60)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let impatient: Vec<_> = (0..4).map(|_| tokio::spawn(send(Duration::from_millis(200)))).collect();
        for request in impatient {
            assert!(request.await.unwrap().is_err(), "gave up after 200 ms");
        }
        assert_eq!(normalize_transcript(&patient.await.unwrap().unwrap().text), long);
    });
    let stats = server.stats();
    assert_eq!(stats["requests"], 5, "{stats}");
    assert_eq!(stats["abandoned"], 4, "the four that gave up waited behind the first and were dropped: {stats}");
}
