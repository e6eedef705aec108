//! `hearken devices check` and `hearken devices schema` on good and broken catalogs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use hearken_tests::{hearken, repo_file, stderr, stdout, write_file};

const GOOD_DEVICE: &str = r#"
[[devices]]
id = "lamp"
name = "lamp"
actions = ["turn_on", "set_brightness"]
[devices.params.set_brightness]
min = 0
max = 100
"#;

/// Writes `body` as a catalog, runs `devices check`, and returns (exit code, stderr).
fn check(body: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "broken.toml", body);
    let out = hearken(&["devices", "check", path.to_str().unwrap()]);
    (out.status.code().unwrap(), stderr(&out))
}

fn assert_problem(body: &str, device: Option<&str>, field: &str, words: &str) {
    let (code, err) = check(body);
    assert_eq!(code, 2, "expected exit 2 for:\n{body}\nstderr: {err}");
    assert!(err.contains("broken.toml"), "file not named: {err}");
    if let Some(device) = device {
        assert!(err.contains(&format!("device {device}")), "device {device} not named: {err}");
    }
    assert!(err.contains(&format!("field {field}")), "field {field} not named: {err}");
    assert!(err.contains(words), "'{words}' missing: {err}");
}

#[test]
fn example_catalogs_pass_with_a_summary() {
    let home = repo_file("devices/home.toml");
    let factory = repo_file("devices/factory.toml");
    let office = repo_file("devices/office.toml");
    let out =
        hearken(&["devices", "check", home.to_str().unwrap(), factory.to_str().unwrap(), office.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["ok"], true);
        assert!(line["devices"].as_u64().unwrap() >= 12, "{line}");
    }
}

#[test]
fn duplicate_ids_are_named() {
    assert_problem(
        &format!("site = \"s\"\n{GOOD_DEVICE}{}", GOOD_DEVICE.replace("name = \"lamp\"", "name = \"other\"")),
        Some("lamp"),
        "id",
        "duplicate id",
    );
}

#[test]
fn unknown_protocol_is_named_with_the_known_ones() {
    let body = format!("site = \"s\"\n{}", GOOD_DEVICE.replace("actions =", "protocol = \"homekit\"\nactions ="));
    assert_problem(
        &body,
        Some("lamp"),
        "protocol",
        "unknown protocol 'homekit' (known: hearken, zigbee2mqtt, tasmota)",
    );
}

#[test]
fn value_taking_action_without_params_is_named() {
    let body = "site = \"s\"\n[[devices]]\nid = \"lamp\"\nname = \"lamp\"\nactions = [\"set_brightness\"]\n";
    assert_problem(body, Some("lamp"), "params.set_brightness", "takes a value");
}

#[test]
fn min_greater_than_max_is_named() {
    let body = format!("site = \"s\"\n{}", GOOD_DEVICE.replace("min = 0\nmax = 100", "min = 80\nmax = 20"));
    assert_problem(&body, Some("lamp"), "params.set_brightness.min", "min 80 is greater than max 20");
}

#[test]
fn confirm_naming_an_unknown_action_is_named() {
    let body = format!("site = \"s\"\n{}", GOOD_DEVICE.replace("actions =", "confirm = [\"unlock\"]\nactions ="));
    assert_problem(&body, Some("lamp"), "confirm", "'unlock' is not one of the device's actions");
}

#[test]
fn a_group_member_must_be_another_plain_device_of_the_catalog() {
    let group = |members: &str| {
        format!(
            "site = \"s\"\n{GOOD_DEVICE}\n[[devices]]\nid = \"lamps\"\nname = \"lamps\"\nactions = [\"turn_on\"]\nmembers = {members}\n"
        )
    };
    assert_problem(&group("[\"ghost\"]"), Some("lamps"), "members", "'ghost' is not a device of this catalog");
    assert_problem(&group("[\"lamps\"]"), Some("lamps"), "members", "a device cannot be its own member");
    let nested = format!(
        "{}\n[[devices]]\nid = \"all\"\nname = \"all lights\"\nactions = [\"turn_on\"]\nmembers = [\"lamps\"]\n",
        group("[\"lamp\"]")
    );
    assert_problem(&nested, Some("all"), "members", "'lamps' is itself a group");
    assert_eq!(check(&group("[\"lamp\"]")).0, 0);
}

#[test]
fn empty_catalog_is_named() {
    assert_problem("site = \"s\"\n", None, "devices", "no devices");
}

#[test]
fn bad_id_characters_are_named() {
    let body = format!("site = \"s\"\n{}", GOOD_DEVICE.replace("id = \"lamp\"", "id = \"Living Room/Lamp\""));
    assert_problem(&body, Some("#1"), "id", "must match [a-z0-9_]+");
}

#[test]
fn action_the_protocol_cannot_encode_is_named() {
    let body =
        "site = \"s\"\n[[devices]]\nid = \"plug\"\nname = \"plug\"\nprotocol = \"tasmota\"\nactions = [\"unlock\"]\n";
    assert_problem(body, Some("plug"), "actions", "protocol tasmota cannot encode action 'unlock'");
}

#[test]
fn ambiguous_spoken_names_are_named() {
    let second = "[[devices]]\nid = \"other\"\nname = \"other\"\naliases = [\"Lamp\"]\nactions = [\"turn_on\"]\n";
    assert_problem(
        &format!("site = \"s\"\n{GOOD_DEVICE}{second}"),
        Some("other"),
        "aliases",
        "already a name of device 'lamp'",
    );
}

#[test]
fn wildcard_topic_and_bad_budget_are_named() {
    let body = format!(
        "site = \"s\"\n{}",
        GOOD_DEVICE.replace("actions =", "topic = \"home/+/lamp\"\nbudget_ms = 0\nactions =")
    );
    assert_problem(&body, Some("lamp"), "topic", "wildcards");
    assert_problem(&body, Some("lamp"), "budget_ms", "between 1 and");
}

#[test]
fn unknown_fields_and_bad_toml_name_the_file_and_field() {
    let (code, err) =
        check(&format!("site = \"s\"\n{}", GOOD_DEVICE.replace("actions =", "colour = \"red\"\nactions =")));
    assert_eq!(code, 2);
    assert!(err.contains("broken.toml") && err.contains("colour"), "{err}");
    let (code, err) = check("site = \n");
    assert_eq!(code, 2);
    assert!(err.contains("broken.toml") && err.contains("line 1"), "{err}");
}

#[test]
fn every_problem_is_reported_in_one_pass() {
    let body = "site = \"Bad Site\"\n[[devices]]\nid = \"a\"\nname = \"\"\nactions = []\nconfirm = [\"x\"]\n";
    let (code, err) = check(body);
    assert_eq!(code, 2);
    for field in ["field site", "field name", "field actions", "field confirm"] {
        assert!(err.contains(field), "{field} missing from: {err}");
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = hearken(&["devices", "check", "/nonexistent/catalog.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/catalog.toml: cannot read catalog"), "{}", stderr(&out));
}

#[test]
fn schema_subcommand_prints_the_constraining_schema() {
    let home = repo_file("devices/home.toml");
    let out = hearken(&["devices", "schema", home.to_str().unwrap()]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let branches = schema["properties"]["commands"]["items"]["anyOf"].as_array().unwrap();
    assert!(branches.len() >= 13);
}

#[test]
fn a_site_name_is_one_safe_topic_level() {
    for bad in ["plant/7", "plant+7", "#", "-plant", "Plant", "plant 7", ""] {
        assert_problem(&format!("site = \"{bad}\"\n{GOOD_DEVICE}"), None, "site", "must match [a-z0-9][a-z0-9_-]*");
    }
    for good in ["plant-7", "home", "line_2-east"] {
        let (code, err) = check(&format!("site = \"{good}\"\n{GOOD_DEVICE}"));
        assert_eq!(code, 0, "{good}: {err}");
    }
}
