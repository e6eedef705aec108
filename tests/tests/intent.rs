//! The intent stage with the real `hearken-llama` engine and the real
//! SmolLM2-135M model: expected commands for utterances over each example
//! catalog, nothing for non-commands, never a value out of range or an
//! action a device lacks, refused replies, the engine's token and its
//! answers to malformed requests, and the accuracy bar on the dev sets.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use hearken::catalog::Catalog;
use hearken::catalog::Command;
use hearken::intent::{parse_reply, Interpreter, InterpreterConfig, NluError};
use hearken::intent::{ChatClient, Message};
use hearken::local::LlamaProcess;
use hearken_testkit::eval;
use hearken_tests::{hearken, intent_model, repo_file, repo_root, stderr, stdout};
use serde_json::{json, Value};

async fn engine() -> LlamaProcess {
    LlamaProcess::start(&intent_model(), 2).await.unwrap()
}

fn catalog(name: &str) -> Catalog {
    Catalog::load(&repo_file(&format!("devices/{name}"))).unwrap()
}

fn cmd(device: &str, action: &str, value: Option<i64>) -> Command {
    Command { device: device.into(), action: action.into(), value }
}

async fn check_utterances(engine: &LlamaProcess, catalog_name: &str, cases: &[(&str, Vec<Command>)]) {
    let client = engine.client(Duration::from_secs(30)).unwrap();
    let interpreter = Interpreter::new(catalog(catalog_name), client, InterpreterConfig::default());
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        let got = interpreter.interpret(text).await.unwrap().commands;
        let same = got.len() == expected.len() && got.iter().all(|c| expected.contains(c));
        if !same {
            wrong.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{catalog_name}:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utterances_over_each_example_catalog_give_the_expected_commands() {
    let engine = engine().await;
    let home = vec![
        (
            "turn off the kitchen light and the fan",
            vec![cmd("kitchen_light", "turn_off", None), cmd("ceiling_fan", "turn_off", None)],
        ),
        ("switch on the porch light", vec![cmd("porch_light", "turn_on", None)]),
        ("lock the front door", vec![cmd("front_door_lock", "lock", None)]),
        ("set the thermostat to twenty two degrees", vec![cmd("thermostat", "set_temperature", Some(22))]),
        ("open the garage door", vec![cmd("garage_door", "open", None)]),
        ("close the blinds", vec![cmd("living_room_blinds", "close", None)]),
        ("mute the television", vec![cmd("tv", "mute", None)]),
        ("pause the music", vec![cmd("kitchen_speaker", "pause", None)]),
        ("dim the bedroom light to 100", vec![cmd("bedroom_light", "set_brightness", Some(100))]),
        ("send the vacuum back to its dock", vec![cmd("robot_vacuum", "return_to_dock", None)]),
        ("turn on the coffee machine", vec![cmd("coffee_machine", "turn_on", None)]),
        ("set the fan to speed two", vec![cmd("ceiling_fan", "set_speed", Some(2))]),
        ("open the garbage door", vec![cmd("garage_door", "open", None)]),
    ];
    check_utterances(&engine, "home.toml", &home).await;
    let factory = vec![
        ("stop conveyor two", vec![cmd("conveyor_2", "stop", None)]),
        ("start conveyor one and pump three", vec![cmd("conveyor_1", "start", None), cmd("pump_3", "start", None)]),
        ("stop the wash pump", vec![cmd("pump_4", "stop", None)]),
        ("set the press to 180 bar", vec![cmd("press_1", "set_pressure", Some(180))]),
        ("close the fire door", vec![cmd("fire_door", "close", None)]),
        ("turn off the kiln", vec![cmd("kiln", "turn_off", None)]),
        ("open the dock door", vec![cmd("loading_dock_door", "open", None)]),
        ("yard lights on", vec![cmd("yard_lights", "turn_on", None)]),
        ("start the compressor", vec![cmd("compressor", "start", None)]),
        ("conveyor one speed to fifty percent", vec![cmd("conveyor_1", "set_speed", Some(50))]),
        ("turn on the andon light", vec![cmd("andon_light", "turn_on", None)]),
        ("start bump free", vec![cmd("pump_3", "start", None)]),
    ];
    check_utterances(&engine, "factory.toml", &factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_commands_give_no_command_and_nothing_outside_the_catalog_is_emitted() {
    let engine = engine().await;
    let client = engine.client(Duration::from_secs(30)).unwrap();
    let home = Interpreter::new(catalog("home.toml"), client.clone(), InterpreterConfig::default());
    for text in [
        "what time is it",
        "is the garage door open",
        "tell me a joke",
        "the kitchen light is flickering",
        "thanks",
        "",
    ] {
        let result = home.interpret(text).await.unwrap();
        assert!(result.commands.is_empty(), "{text:?} gave {:?}", result.commands);
    }
    // The thermostat takes 5–30 °C and the tv cannot be unlocked: whatever the
    // model makes of these, it never emits them.
    let catalog = catalog("home.toml");
    for text in ["set the thermostat to 95 degrees", "unlock the tv", "set the fan speed to 9", "open the thermostat"] {
        let result = home.interpret(text).await.unwrap();
        for command in &result.commands {
            catalog.check(command).unwrap_or_else(|e| panic!("{text:?} emitted {command:?}: {e}"));
            assert_ne!(command.value, Some(95), "{text:?}");
            assert_ne!(command.value, Some(9), "{text:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_fails_validation_is_refused_with_a_clear_error() {
    let engine = engine().await;
    let client = engine.client(Duration::from_secs(30)).unwrap();
    // A wrong schema (a device the site does not have) makes the real engine
    // produce a reply the catalog must refuse.
    let bad_schema = json!({
        "type": "object",
        "properties": {
            "intent": {"const": "control"},
            "commands": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object",
                "properties": {"device": {"const": "oven"}, "action": {"const": "turn_on"}},
                "required": ["device", "action"], "additionalProperties": false
            }}
        },
        "required": ["intent", "commands"], "additionalProperties": false
    });
    let messages = [Message { role: "user", content: "turn on the oven".into() }];
    let reply = client.complete(&messages, Some(&bad_schema), 64).await.unwrap();
    let error = parse_reply(&catalog("home.toml"), &reply.content).unwrap_err();
    assert!(matches!(error, NluError::Invalid { .. }), "{error}");
    assert!(error.to_string().contains("unknown device 'oven'"), "{error}");
    // An out-of-range value the same way.
    let range_schema = json!({
        "type": "object",
        "properties": {
            "intent": {"const": "control"},
            "commands": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object",
                "properties": {"device": {"const": "thermostat"}, "action": {"const": "set_temperature"}, "value": {"const": 95}},
                "required": ["device", "action", "value"], "additionalProperties": false
            }}
        },
        "required": ["intent", "commands"], "additionalProperties": false
    });
    let reply = client.complete(&messages, Some(&range_schema), 64).await.unwrap();
    let error = parse_reply(&catalog("home.toml"), &reply.content).unwrap_err();
    assert!(error.to_string().contains("thermostat"), "{error}");
    // Without the schema the model writes what it likes; the CLI refuses it or
    // gives only valid commands, and says which.
    let output = hearken(&[
        "interpret",
        "--catalog",
        repo_file("devices/home.toml").to_str().unwrap(),
        "--model",
        intent_model().to_str().unwrap(),
        "--no-schema",
        "turn on the kitchen light",
    ]);
    let line: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    if let Some(error) = line.get("error") {
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(error.as_str().unwrap().contains("model reply refused"), "{line}");
    } else {
        let commands: Vec<Command> = serde_json::from_value(line["commands"].clone()).unwrap();
        for c in &commands {
            catalog("home.toml").check(c).unwrap();
        }
    }
}

async fn post(url: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let value = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_requires_its_token_and_answers_malformed_requests_with_4xx() {
    hearken_tests::hearken_bin();
    let token = "0123456789abcdef0123";
    let mut child = tokio::process::Command::new(hearken::local::engine_binary("hearken-llama"))
        .args(["--model", intent_model().to_str().unwrap(), "--listen", "127.0.0.1:0", "--threads", "2"])
        .env("HEARKEN_ENGINE_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let url = format!("http://{}", first["listening"].as_str().unwrap());
    let good = r#"{"messages":[{"role":"user","content":"say hi"}],"max_tokens":4}"#;

    assert_eq!(post(&url, None, good).await.0, 401);
    assert_eq!(post(&url, Some("0123456789abcdef0124"), good).await.0, 401);
    for (body, what) in [
        ("{not json", "invalid JSON"),
        (r#"{"messages":[]}"#, "empty messages"),
        (r#"{"messages":"hello"}"#, "messages not a list"),
        (r#"{"messages":[{"role":"wizard","content":"x"}]}"#, "unknown role"),
        (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "zero max_tokens"),
        (r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}"#, "unknown format"),
        (
            r##"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"a":{"$ref":"#/nowhere"}}}}}}"##,
            "unresolvable schema",
        ),
        (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#, "longer than the context"),
    ] {
        let (status, value) = post(&url, Some(token), body).await;
        assert!((400..500).contains(&status), "{what}: {status} {value}");
        assert!(value["error"]["message"].is_string(), "{what}: {value}");
    }
    // Still alive and answering; the schema is obeyed and the prompt prefix is reused.
    let client = ChatClient::new(&url, Some(token.into()), "local", Duration::from_secs(30)).unwrap();
    let schema = json!({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"], "additionalProperties": false});
    let messages = [
        Message { role: "system", content: "Answer the question with yes or no.".repeat(5) },
        Message { role: "user", content: "Is water wet?".into() },
    ];
    let first = client.complete(&messages, Some(&schema), 16).await.unwrap();
    let answer: Value = serde_json::from_str(&first.content).unwrap();
    assert!(answer["answer"] == "yes" || answer["answer"] == "no", "{}", first.content);
    let second = client.complete(&messages, Some(&schema), 16).await.unwrap();
    assert!(second.cached_tokens.unwrap() > 20, "prefix cache unused: {:?}", second.cached_tokens);
    // And the server refuses to listen anywhere but loopback.
    let output = std::process::Command::new(hearken::local::engine_binary("hearken-llama"))
        .args(["--model", intent_model().to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .env("HEARKEN_ENGINE_TOKEN", token)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interpret_command_prints_one_json_line_per_utterance() {
    let output = std::process::Command::new(hearken_tests::hearken_bin())
        .args(["interpret", "--catalog", repo_file("devices/factory.toml").to_str().unwrap(), "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"stop conveyor two\n\nwhen is lunch\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["text"], "stop conveyor two");
    assert_eq!(lines[0]["commands"], json!([{"device": "conveyor_2", "action": "stop"}]));
    assert_eq!(lines[0]["needs_confirmation"], json!([]));
    assert!(lines[0]["latency_ms"]["nlu"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["commands"], json!([]));
    // A confirm-class action is listed under needs_confirmation.
    let output =
        hearken(&["interpret", "--catalog", repo_file("devices/home.toml").to_str().unwrap(), "unlock the front door"]);
    let line: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    assert_eq!(line["needs_confirmation"], json!([{"device": "front_door_lock", "action": "unlock"}]), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accuracy_on_the_dev_sets_meets_the_bar() {
    let engine = engine().await;
    let client = engine.client(Duration::from_secs(30)).unwrap();
    for (set, bar) in [("tests/data/nlu_dev.jsonl", 0.95), ("tests/data/nlu_dev_asr.jsonl", 0.75)] {
        let cases = eval::load_set(&repo_file(set)).unwrap();
        let report =
            eval::evaluate(&cases, Path::new(&repo_root()), &client, &InterpreterConfig::default()).await.unwrap();
        let wrong: Vec<String> = report
            .results
            .iter()
            .filter(|r| !r.correct)
            .map(|r| format!("{:?}: expected {:?}, got {:?} {:?}", r.case.text, r.case.commands, r.got, r.error))
            .collect();
        assert!(report.accuracy >= bar, "{set}: accuracy {:.3} < {bar}\n{}", report.accuracy, wrong.join("\n"));
        assert_eq!(report.false_commands, 0, "{set}: commands for non-commands\n{}", wrong.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_dies_gives_a_clear_error_and_plain_requests_still_work() {
    let engine = engine().await;
    let client = engine.client(Duration::from_secs(10)).unwrap();
    let office = Interpreter::new(catalog("office.toml"), client, InterpreterConfig::default());
    let pid = engine.pid().unwrap();
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Needs the model ("lower" is no action name): a clear error naming the engine.
    let error = office.interpret("lower the projector screen").await.unwrap_err();
    assert!(matches!(error, NluError::Engine(_)), "{error}");
    assert!(error.to_string().contains("intent engine"), "{error}");
    // Settled by its words: no model needed.
    let result = office.interpret("turn off the printer").await.unwrap();
    assert_eq!(result.commands, vec![cmd("printer", "turn_off", None)]);
    assert!(!result.asked_model);
}
