//! Deciding a device's action from the words around its name, where plain
//! English settles it: "off" is turn_off, "stop" is stop (or turn_off for a
//! device that has no stop), a number with "degrees" is the temperature
//! setting. What the words do not settle ("lower the screen", "clear the
//! andon") is left for the model. Splitting the utterance into clauses at
//! "and"/"then" lets "stop conveyor one and conveyor two" give both
//! conveyors the verb of the first clause.

use crate::catalog::command::Command;
use crate::catalog::Device;

/// Words that join clauses.
const CLAUSE_BREAKS: &[&str] = &["and", "then", "also", "plus"];

/// Words that negate a clause, or make it a statement about the device
/// ("the printer is out of paper"): nothing is done for it.
const NOT_A_REQUEST: &[&str] =
    &["dont", "not", "never", "cancel", "is", "isnt", "are", "arent", "was", "were", "seems", "looks"];

/// What the words say about one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The words settle it.
    Command(Command),
    /// The words name the device but do not settle the action: ask the model.
    Unsettled,
    /// The clause is negated or asks nothing of this device.
    Nothing,
}

/// Splits word indices into clauses at "and"/"then", never inside a name
/// (`protected` holds the word ranges of matched names).
pub fn clauses(words: &[String], protected: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut clauses = Vec::new();
    let mut start = 0;
    for (i, word) in words.iter().enumerate() {
        let inside_name = protected.iter().any(|&(s, e)| s <= i && i < e);
        if CLAUSE_BREAKS.contains(&word.as_str()) && !inside_name {
            if i > start {
                clauses.push((start, i));
            }
            start = i + 1;
        }
    }
    if start < words.len() {
        clauses.push((start, words.len()));
    }
    clauses
}

/// Whether a clause carries a verb or a setting of its own; one that does
/// not ("… and conveyor two") borrows the previous clause's words.
pub fn has_own_cue(words: &[String]) -> bool {
    words.iter().any(|w| {
        matches!(
            w.as_str(),
            "on" | "off"
                | "of"
                | "turn"
                | "switch"
                | "set"
                | "start"
                | "stop"
                | "open"
                | "close"
                | "lock"
                | "unlock"
                | "play"
                | "pause"
                | "mute"
                | "unmute"
                | "dim"
                | "put"
                | "make"
                | "shut"
                | "lower"
                | "raise"
                | "clear"
                | "send"
                | "next"
                | "skip"
                | "dock"
                | "activate"
                | "deactivate"
                | "enable"
                | "disable"
                | "halt"
                | "run"
                | "brighten"
        ) || w.parse::<i64>().is_ok()
    })
}

/// Actions that mean "start, open, on".
const ON_ACTIONS: &[&str] = &["turn_on", "start", "play", "open", "unlock", "unmute", "resume"];
/// Actions that mean "stop, close, off".
const OFF_ACTIONS: &[&str] = &["turn_off", "stop", "pause", "close", "lock", "mute"];

/// The actions a clause's words rule out for the model: a request that says
/// "off", "stop" or "close" never means play or open, and the other way round
/// ("turn off the music" on a speaker without turn_off may be pause, never play).
/// Nothing is ruled out when the words point both ways or neither.
pub fn ruled_out(words: &[String]) -> &'static [&'static str] {
    let has = |w: &str| words.iter().any(|x| x == w);
    let off = ["off", "stop", "halt", "pause", "close", "shut", "deactivate", "disable"].iter().any(|w| has(w));
    // "on" as a preposition ("put the tv on mute", "music on the speaker") says nothing.
    let switched_on = words.iter().enumerate().any(|(i, w)| {
        w == "on" && (i + 1 == words.len() || i > 0 && matches!(words[i - 1].as_str(), "turn" | "switch" | "power"))
    });
    let on = switched_on || ["start", "play", "open", "resume", "activate", "enable"].iter().any(|w| has(w));
    match (on, off) {
        (false, true) => ON_ACTIONS,
        (true, false) => OFF_ACTIONS,
        _ => &[],
    }
}

/// Decides `device`'s action from the clause's words.
pub fn resolve(device: &Device, words: &[String]) -> Resolution {
    let has = |w: &str| words.iter().any(|x| x == w);
    if NOT_A_REQUEST.iter().any(|n| has(n)) {
        return Resolution::Nothing;
    }
    let command = |action: &str, value: Option<i64>| {
        Resolution::Command(Command { device: device.id.clone(), action: action.to_owned(), value })
    };
    if let Some(value) = setting_value(words) {
        return match value_action(device, words) {
            Some(action) if device.param(&action).is_some_and(|r| (r.min..=r.max).contains(&value)) => {
                command(&action, Some(value))
            }
            _ => Resolution::Unsettled,
        };
    }
    let mut actions: Vec<&str> = Vec::new();
    let mut want = |action: &str| {
        if device.has_action(action) && device.param(action).is_none() && !actions.contains(&action) {
            actions.push(device.actions.iter().find(|a| *a == action).map_or("", String::as_str));
        }
    };
    // "turn of" is how recognizers (and hurried typists) write "turn off".
    let off = has("off") || words.windows(2).any(|p| matches!(p[0].as_str(), "turn" | "switch") && p[1] == "of");
    let on = has("on") && !off;
    if on || has("activate") || has("enable") {
        want("turn_on");
    }
    if off || has("deactivate") || has("disable") {
        want("turn_off");
    }
    for verb in ["open", "close", "lock", "unlock", "mute", "unmute", "play", "pause", "start", "stop"] {
        if has(verb) {
            want(verb);
        }
    }
    if has("shut") {
        want("close");
    }
    if (has("start") || has("run")) && !device.has_action("start") {
        want("turn_on");
    }
    if (has("stop") || has("halt")) && !device.has_action("stop") {
        want("turn_off");
    }
    if has("next") || has("skip") {
        want("next_track");
    }
    if has("dock") || (has("back") && device.has_action("return_to_dock")) {
        want("return_to_dock");
    }
    match actions.as_slice() {
        [action] => command(action, None),
        _ => Resolution::Unsettled,
    }
}

/// The number a clause sets: the one after "to"/"at" or before a unit
/// ("to 80 percent", "21 degrees"), else the last one.
pub fn setting_value(words: &[String]) -> Option<i64> {
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<i64>().ok());
    let marked = (0..words.len()).find_map(|i| {
        let after_to = i > 0 && matches!(words[i - 1].as_str(), "to" | "at");
        let before_unit =
            words.get(i + 1).is_some_and(|w| matches!(w.as_str(), "percent" | "degrees" | "degree" | "bar"));
        if after_to || before_unit {
            number(i)
        } else {
            None
        }
    });
    marked.or_else(|| words.iter().rev().find_map(|w| w.parse::<i64>().ok()))
}

/// The value-taking action a clause with a number means: the one whose name
/// or unit the clause says ("speed", "volume", "degrees", "percent"), else
/// the device's only one.
fn value_action(device: &Device, words: &[String]) -> Option<String> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let valued: Vec<&String> = device.actions.iter().filter(|a| device.param(a).is_some()).collect();
    let named: Vec<&String> = valued
        .iter()
        .copied()
        .filter(|action| {
            let unit = device.param(action).and_then(|r| r.unit.as_deref()).unwrap_or("");
            action.split('_').any(|part| part != "set" && (has(part) || (part == "temp" && has("temperature"))))
                || (action.contains("color") && (has("colour") || has("color")))
                || (action.contains("brightness") && (has("dim") || has("brighten")))
                || ((has("degrees") || has("degree")) && matches!(unit, "celsius" | "fahrenheit"))
                || (has("bar") && unit == "bar")
        })
        .collect();
    match (named.as_slice(), valued.as_slice()) {
        ([one], _) => Some((*one).clone()),
        ([], [only]) => Some((*only).clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::Catalog;
    use crate::intent::normalize::normalize;
    use std::path::Path;

    fn device(catalog: &str, id: &str) -> Device {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices").join(catalog);
        Catalog::load(&path).unwrap().device(id).unwrap().clone()
    }

    /// Resolves with the words outside device names, as the planner does.
    fn action(catalog_name: &str, id: &str, text: &str) -> Resolution {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices").join(catalog_name);
        let catalog = Catalog::load(&path).unwrap();
        let words = normalize(text);
        let names = crate::intent::linker::Linker::new(&catalog).find(&words);
        let outside: Vec<String> = (0..words.len())
            .filter(|i| !names.iter().any(|m| m.start <= *i && *i < m.end))
            .map(|i| words[i].clone())
            .collect();
        resolve(&device(catalog_name, id), &outside)
    }

    fn cmd(id: &str, action: &str, value: Option<i64>) -> Resolution {
        Resolution::Command(Command { device: id.into(), action: action.into(), value })
    }

    #[test]
    fn plain_words_settle_plain_actions() {
        assert_eq!(
            action("home.toml", "kitchen_light", "switch off the kitchen lights"),
            cmd("kitchen_light", "turn_off", None)
        );
        assert_eq!(
            action("home.toml", "coffee_machine", "start the coffee machine"),
            cmd("coffee_machine", "turn_on", None)
        );
        assert_eq!(action("factory.toml", "kiln", "stop the kiln"), cmd("kiln", "turn_off", None));
        assert_eq!(action("factory.toml", "conveyor_2", "stop conveyor two"), cmd("conveyor_2", "stop", None));
        assert_eq!(
            action("home.toml", "living_room_lamp", "turn of the lamp"),
            cmd("living_room_lamp", "turn_off", None)
        );
    }

    #[test]
    fn numbers_pick_the_named_or_only_setting() {
        assert_eq!(
            action("home.toml", "thermostat", "make it 19 degrees"),
            cmd("thermostat", "set_temperature", Some(19))
        );
        assert_eq!(
            action("home.toml", "kitchen_light", "kitchen light colour temperature to 300"),
            cmd("kitchen_light", "set_color_temp", Some(300))
        );
        assert_eq!(
            action("factory.toml", "conveyor_1", "slow conveyor one down to 25"),
            cmd("conveyor_1", "set_speed", Some(25))
        );
        // Out of range: not settled here (and the schema will not allow it either).
        assert_eq!(action("home.toml", "thermostat", "thermostat to 95"), Resolution::Unsettled);
    }

    #[test]
    fn unknown_verbs_and_negations() {
        assert_eq!(action("office.toml", "projector_screen", "lower the projector screen"), Resolution::Unsettled);
        assert_eq!(action("home.toml", "tv", "dont turn on the tv"), Resolution::Nothing);
        assert_eq!(action("office.toml", "printer", "the printer is out on paper"), Resolution::Nothing);
    }

    #[test]
    fn clauses_split_at_and_outside_names() {
        let words = normalize("stop conveyor one and conveyor two");
        assert_eq!(clauses(&words, &[]), vec![(0, 3), (4, 6)]);
        assert_eq!(clauses(&normalize("line a and b"), &[(0, 4)]), vec![(0, 4)]);
        assert!(!has_own_cue(&normalize("and the yard lights")));
    }

    #[test]
    fn the_words_rule_out_the_opposite_actions() {
        let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert!(ruled_out(&words("turn off the music")).contains(&"play"));
        assert!(ruled_out(&words("switch on the speaker")).contains(&"pause"));
        assert!(ruled_out(&words("put the tv on mute")).is_empty());
        assert!(ruled_out(&words("turn off the lamp and turn on the fan")).is_empty());
        assert!(ruled_out(&words("lower the projector screen")).is_empty());
    }
}
