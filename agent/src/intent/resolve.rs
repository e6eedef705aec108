//! Clauses and what they leave to the model: splitting an utterance at
//! "and"/"then" lets "stop conveyor one and conveyor two" give both
//! conveyors the verb of the first clause; negations and descriptions ask
//! nothing; the opposite of what the words say is never offered to the model,
//! nor a setting that ignores the number said. The verb itself is the
//! grammar's (`super::grammar`).

/// Words that join clauses.
const CLAUSE_BREAKS: &[&str] = &["and", "then", "also", "plus"];

/// Words that negate a clause, or make it a statement about the device
/// ("the printer is out of paper"): nothing is done for it.
const NOT_A_REQUEST: &[&str] =
    &["dont", "not", "never", "cancel", "is", "isnt", "are", "arent", "was", "were", "seems", "looks"];

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
    super::grammar::verb(words).is_some()
        || words.iter().any(|w| {
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

/// Whether a clause is negated or describes rather than asks ("the printer is out of paper").
pub fn negated(words: &[String]) -> bool {
    NOT_A_REQUEST.iter().any(|n| words.iter().any(|w| w == n))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::intent::normalize::normalize;

    #[test]
    fn clauses_split_at_and_outside_names() {
        let words = normalize("stop conveyor one and conveyor two");
        assert_eq!(clauses(&words, &[]), vec![(0, 3), (4, 6)]);
        assert_eq!(clauses(&normalize("line a and b"), &[(0, 4)]), vec![(0, 4)]);
        assert!(!has_own_cue(&normalize("and the yard lights")));
        assert!(negated(&normalize("dont turn on the tv")));
        assert!(negated(&normalize("the printer is out on paper")));
        assert!(!negated(&normalize("turn on the tv")));
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
