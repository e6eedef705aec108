//! The intent dev set (`tests/data/nlu_dev.jsonl`): utterances over three
//! catalogs with the exact commands they should yield. The interpreter's
//! accuracy is measured on it; this test keeps it honest — every expected
//! command is one the catalog allows, non-commands expect nothing, and every
//! kind of utterance is represented.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};

use hearken::catalog::Catalog;
use hearken::catalog::Command;
use hearken_tests::repo_file;
use serde_json::Value;

#[test]
fn every_expected_command_is_valid_and_every_kind_is_covered() {
    let text = std::fs::read_to_string(repo_file("tests/data/nlu_dev.jsonl")).unwrap();
    let mut catalogs: HashMap<String, Catalog> = HashMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (number, line) in text.lines().enumerate() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", number + 1));
        let catalog_path = entry["catalog"].as_str().unwrap().to_owned();
        let catalog =
            catalogs.entry(catalog_path.clone()).or_insert_with(|| Catalog::load(&repo_file(&catalog_path)).unwrap());
        let utterance = entry["text"].as_str().unwrap();
        assert!(seen.insert((catalog_path.clone(), utterance.to_owned())), "line {}: duplicate utterance", number + 1);
        let kind = entry["kind"].as_str().unwrap().to_owned();
        let commands: Vec<Command> = serde_json::from_value(entry["commands"].clone()).unwrap();
        for c in &commands {
            catalog.check(c).unwrap_or_else(|e| panic!("line {} ({utterance}): {e}", number + 1));
        }
        match kind.as_str() {
            "non_command" => assert!(commands.is_empty(), "line {}: a non-command expects no command", number + 1),
            "multi" => assert!(commands.len() >= 2, "line {}: multi needs several commands", number + 1),
            "paraphrase" | "numbers" | "asr" => assert!(!commands.is_empty(), "line {}", number + 1),
            other => panic!("line {}: unknown kind {other}", number + 1),
        }
        *kinds.entry(kind).or_default() += 1;
    }
    assert!(text.lines().count() >= 200, "{} utterances", text.lines().count());
    assert!(catalogs.len() >= 3, "{:?}", catalogs.keys());
    for kind in ["paraphrase", "numbers", "multi", "non_command", "asr"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) >= 20, "{kind}: {kinds:?}");
    }
}

#[test]
fn the_recognizer_set_is_the_clean_set_as_whisper_heard_it() {
    let clean = std::fs::read_to_string(repo_file("tests/data/nlu_dev.jsonl")).unwrap();
    let heard = std::fs::read_to_string(repo_file("tests/data/nlu_dev_asr.jsonl")).unwrap();
    assert_eq!(clean.lines().count(), heard.lines().count(), "regenerate with scripts/nlu-asr-set.sh");
    for (number, (a, b)) in clean.lines().zip(heard.lines()).enumerate() {
        let a: Value = serde_json::from_str(a).unwrap();
        let b: Value = serde_json::from_str(b).unwrap();
        assert_eq!(a["text"], b["spoken"], "line {}", number + 1);
        for field in ["catalog", "kind", "commands"] {
            assert_eq!(a[field], b[field], "line {}: {field}", number + 1);
        }
        assert!(b["text"].is_string(), "line {}", number + 1);
    }
}
