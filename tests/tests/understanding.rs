//! What people really say, through the intent stage with the real engine and
//! model (issue 17): kinds, floors, the speaker's room, groups, the sense of
//! a verb, percentages in a device's native range, and refusal with a reason
//! — never a substitute — for what the site does not have or cannot do, for
//! timers and for questions in every form.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use hearken::catalog::{Catalog, Command};
use hearken::intent::{Interpreter, InterpreterConfig, NoCommandReason};
use hearken::local::LlamaProcess;
use hearken_testkit::eval;
use hearken_tests::{hearken, intent_model, repo_file, repo_root, stdout};
use serde_json::Value;

async fn engine() -> LlamaProcess {
    LlamaProcess::start(&intent_model(), 2).await.expect("hearken-llama did not start")
}

fn house() -> Catalog {
    Catalog::load(&repo_file("devices/house.toml")).unwrap()
}

/// "device:action[:value] …" as commands.
fn commands(spec: &str) -> Vec<Command> {
    spec.split_whitespace()
        .map(|c| {
            let parts: Vec<&str> = c.split(':').collect();
            Command {
                device: parts[0].into(),
                action: parts[1].into(),
                value: parts.get(2).map(|v| v.parse().unwrap()),
            }
        })
        .collect()
}

/// Runs `cases` (text, speaker's room, expected commands) and returns the mismatches.
async fn check(interpreter: &Interpreter, cases: &[(&str, Option<&str>, &str)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (text, area, expected) in cases {
        let got = interpreter.interpret_planned(&interpreter.plan_in(text, *area)).await.unwrap();
        let mut want = commands(expected);
        let mut have = got.commands.clone();
        want.sort_by(|a, b| a.device.cmp(&b.device));
        have.sort_by(|a, b| a.device.cmp(&b.device));
        if want != have {
            wrong.push(format!("{text:?} in {area:?}: expected {want:?}, got {have:?} ({:?})", got.explanation));
        }
    }
    wrong
}

/// Runs refusals (text, speaker's room, reason) and returns the mismatches.
async fn check_refused(interpreter: &Interpreter, cases: &[(&str, Option<&str>, NoCommandReason)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (text, area, reason) in cases {
        let got = interpreter.interpret_planned(&interpreter.plan_in(text, *area)).await.unwrap();
        if !got.commands.is_empty() || got.no_command_reason != Some(*reason) || got.explanation.is_none() {
            wrong.push(format!(
                "{text:?}: expected {reason:?}, got {:?} {:?} {:?}",
                got.commands, got.no_command_reason, got.explanation
            ));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_floors_rooms_groups_polarity_and_percent_give_the_commands_meant() {
    let engine = engine().await;
    let interpreter =
        Interpreter::new(house(), engine.client(Duration::from_secs(30)).unwrap(), InterpreterConfig::default());
    let cases: &[(&str, Option<&str>, &str)] = &[
        // kinds × areas
        ("switch off the lights in the kitchen", None, "kitchen_ceiling_light:turn_off counter_lights:turn_off"),
        ("close the curtains", None, "bedroom_curtains:close"),
        ("lock the doors", None, "front_door_lock:lock back_door_lock:lock"),
        // floors
        ("turn off the lights upstairs", None, "bedroom_ceiling_light:turn_off bedside_lamp:turn_off night_light:turn_off bathroom_mirror_light:turn_off desk_lamp:turn_off"),
        ("everything off downstairs", None, "living_room_ceiling_light:turn_off reading_lamp:turn_off kitchen_ceiling_light:turn_off counter_lights:turn_off dining_pendant:turn_off hallway_light:turn_off coffee_machine:turn_off living_room_fan:turn_off living_room_thermostat:turn_off living_room_tv:turn_off"),
        // the speaker's room; an explicit place wins
        ("turn on the light", Some("kitchen"), "kitchen_ceiling_light:turn_on counter_lights:turn_on"),
        ("close the blinds", Some("living room"), "living_room_blinds:close"),
        ("turn on the bedroom lights", Some("kitchen"), "bedroom_ceiling_light:turn_on bedside_lamp:turn_on"),
        // polarity
        ("turn the tv volume down", None, "living_room_tv:volume_down"),
        ("resume the music", None, "kitchen_speaker:play"),
        ("go back a song", None, "kitchen_speaker:previous_track"),
        ("lower the blinds halfway", None, "living_room_blinds:set_position:50"),
        ("lights off in the hall", None, "hallway_light:turn_off"),
        ("stop the sprinkler", None, "garden_sprinkler:close"),
        // a bare place with a verb only one kind can do
        ("lock the hallway", None, "front_door_lock:lock"),
        // percent in a native 0–254 range, and in a percent range
        ("set the living room ceiling light to 50 percent", None, "living_room_ceiling_light:set_brightness:127"),
        ("reading lamp to 50%", None, "reading_lamp:set_brightness:50"),
    ];
    let wrong = check(&interpreter, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_devices_contradicted_actions_timers_and_questions_are_refused_with_a_reason() {
    let engine = engine().await;
    let interpreter =
        Interpreter::new(house(), engine.client(Duration::from_secs(30)).unwrap(), InterpreterConfig::default());
    use NoCommandReason::*;
    let cases: &[(&str, Option<&str>, NoCommandReason)] = &[
        // absent: never another device
        ("turn on the garage light", None, NoSuchDevice),
        ("set the kitchen to 20 degrees", None, NoSuchDevice),
        ("turn off the bathroom fan", None, NoSuchDevice),
        ("turn off the bedroom tv", None, NoSuchDevice),
        ("turn on the garden fountain", None, NoSuchDevice),
        ("turn on the fan", Some("kitchen"), NoSuchDevice),
        // a place the house does not have: never every light instead
        ("turn off the lights in the attic", None, NoSuchDevice),
        ("lights on on the third floor", None, NoSuchDevice),
        ("turn on the dishwasher", None, NoDevice),
        // contradicted: the target exists but cannot
        ("lock the garage door", None, UnsupportedAction),
        ("mute the kitchen speaker", None, UnsupportedAction),
        ("set the living room thermostat to 50 percent", None, UnsupportedAction),
        // timers, lists, chit-chat, questions in every form
        ("pause the timer", None, NotACommand),
        ("stop the oven timer", None, NotACommand),
        ("add milk to the shopping list", None, NotACommand),
        ("wake me up at seven", None, NotACommand),
        ("i turned the heating off yesterday", None, NotACommand),
        ("hows the heating doing", None, Question),
        ("any windows open?", None, Question),
        ("is the front door locked", None, Question),
    ];
    let wrong = check_refused(&interpreter, cases).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_house_request_is_one_request_for_the_limit() {
    let engine = engine().await;
    let config = InterpreterConfig { max_commands: 2, ..InterpreterConfig::default() };
    let interpreter = Interpreter::new(house(), engine.client(Duration::from_secs(30)).unwrap(), config);
    let all = interpreter.interpret("turn off all the lights").await.unwrap();
    assert_eq!(all.commands.len(), 12, "{:?}", all.commands);
    // Three named devices are three requests: past the limit of two, refused whole.
    let named = interpreter.interpret("turn off the reading lamp and the desk lamp and the night light").await;
    assert!(named.is_err(), "{named:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_understanding_dev_set_holds_on_both_halves() {
    let engine = engine().await;
    let client = engine.client(Duration::from_secs(30)).unwrap();
    let cases = eval::load_set(&repo_file("tests/data/understanding_dev.jsonl")).unwrap();
    let report = eval::evaluate(&cases, Path::new(&repo_root()), &client, &InterpreterConfig::default()).await.unwrap();
    let wrong: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.correct)
        .map(|r| {
            format!(
                "{:?} ({:?}): expected {:?}, got {:?} {:?}",
                r.case.text, r.case.area, r.case.commands, r.got, r.no_command_reason
            )
        })
        .collect();
    for (half, (correct, cases)) in &report.by_half {
        let accuracy = *correct as f64 / *cases as f64;
        assert!(accuracy >= 0.9, "{half} half: {correct}/{cases}\n{}", wrong.join("\n"));
    }
    // No command for a non-command sentence, ever.
    let false_commands: Vec<&String> = wrong.iter().filter(|w| w.contains("expected []")).collect();
    assert!(
        report.results.iter().filter(|r| r.case.kind == "non_command").all(|r| r.got.is_empty()),
        "{false_commands:?}"
    );
}

#[test]
fn interpret_takes_the_speakers_room_and_prints_the_reason() {
    let catalog = repo_file("devices/house.toml");
    let output = hearken(&[
        "interpret",
        "--catalog",
        catalog.to_str().unwrap(),
        "--area",
        "office",
        "turn on the light",
        "turn on the garage light",
    ]);
    let lines: Vec<Value> = stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["commands"], serde_json::json!([{"device": "desk_lamp", "action": "turn_on"}]), "{lines:?}");
    assert_eq!(lines[1]["commands"], serde_json::json!([]));
    assert_eq!(lines[1]["no_command_reason"], "no_such_device");
    assert!(lines[1]["explanation"].as_str().unwrap().contains("garage"), "{}", lines[1]);
}
