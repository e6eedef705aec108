//! Text normalization before anything is matched or sent to the model:
//! lowercase words without punctuation, fillers removed, numbers as digits
//! whether the recognizer wrote "21", "twenty one" or "twenty-one", and "%"
//! spelled "percent". Small models and fuzzy matching both do measurably
//! better on this form than on raw transcripts.

/// Words that carry nothing for intent ("um turn on the uh fan").
const FILLERS: &[&str] = &["um", "umm", "uh", "uhh", "er", "erm", "hmm", "mm", "please", "pls", "kindly"];

const UNITS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: &[&str] = &["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// Splits `text` into normalized words: lowercase, punctuation dropped
/// (apostrophes joined, hyphens split), fillers removed, `%` → `percent`,
/// number words → digits.
pub fn normalize(text: &str) -> Vec<String> {
    let lowered = text.to_lowercase().replace('%', " percent ");
    let cleaned: String = lowered
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let mut words: Vec<&str> = cleaned.split_whitespace().filter(|w| !FILLERS.contains(w)).collect();
    repair_clipped_onset(&mut words);
    numbers_to_digits(&words)
}

/// Recognizers often lose the first sound of an utterance: "stop" comes out
/// as "top", "unlock" as "and lock". Only the first words are repaired. An
/// utterance does not end in "to": that is "two" ("fan speed to").
fn repair_clipped_onset(words: &mut Vec<&str>) {
    if words.len() >= 2 && matches!(words.last(), Some(&"to" | &"too")) {
        if let Some(last) = words.last_mut() {
            *last = "two";
        }
    }
    match words.as_slice() {
        ["top", ..] => words[0] = "stop",
        ["and", "lock", ..] => {
            words.remove(0);
            words[0] = "unlock";
        }
        _ => {}
    }
}

/// The normalized words joined by single spaces.
pub fn normalize_text(text: &str) -> String {
    normalize(text).join(" ")
}

fn unit_value(word: &str) -> Option<u64> {
    UNITS.iter().position(|u| *u == word).map(|v| v as u64)
}

fn tens_value(word: &str) -> Option<u64> {
    TENS.iter().position(|t| !t.is_empty() && *t == word).map(|v| v as u64 * 10)
}

/// Whether a word can start or continue a spoken number.
fn is_number_word(word: &str) -> bool {
    unit_value(word).is_some() || tens_value(word).is_some() || word == "hundred" || word == "thousand"
}

/// Replaces runs of number words ("one hundred and ten", "eleven hundred",
/// "twenty one") by their value; a digit string may start a run
/// ("1 hundred"). "and" is only part of a number between "hundred" and more
/// number words, so "one and two" stays two numbers.
fn numbers_to_digits(words: &[&str]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let starts_number = is_number_word(words[i])
            || (words[i].chars().all(|c| c.is_ascii_digit())
                && words.get(i + 1).is_some_and(|w| *w == "hundred" || *w == "thousand"));
        if !starts_number || words[i] == "hundred" || words[i] == "thousand" {
            out.push(words[i].to_owned());
            i += 1;
            continue;
        }
        let (value, used) = parse_number(&words[i..]);
        out.push(value.to_string());
        i += used.max(1);
    }
    join_hundreds_and(out)
}

/// "100 and 10" is how a recognizer writes "one hundred and ten".
fn join_hundreds_and(words: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let hundreds = words[i].parse::<u64>().ok().filter(|n| *n >= 100 && n % 100 == 0);
        let rest = words.get(i + 2).and_then(|w| w.parse::<u64>().ok()).filter(|n| *n < 100);
        if let (Some(h), Some("and"), Some(r)) = (hundreds, words.get(i + 1).map(String::as_str), rest) {
            out.push((h + r).to_string());
            i += 3;
        } else {
            out.push(words[i].clone());
            i += 1;
        }
    }
    out
}

/// Parses the longest number at the start of `words`; returns its value and
/// how many words it used.
fn parse_number(words: &[&str]) -> (u64, usize) {
    let mut total = 0u64; // completed thousands
    let mut current = 0u64; // below a thousand
    let mut used = 0;
    let mut last: Option<&str> = None; // "unit", "teen", "tens", "hundred"
    while used < words.len() {
        let word = words[used];
        if let Ok(n) = word.parse::<u64>() {
            if last.is_some() || n > 999 {
                break;
            }
            current = n;
            last = Some(if n < 10 {
                "unit"
            } else if n < 20 {
                "teen"
            } else {
                "tens"
            });
        } else if let Some(n) = unit_value(word) {
            match last {
                None | Some("hundred") => current += n,
                Some("tens") if n < 10 && current.is_multiple_of(10) => current += n,
                _ => break,
            }
            last = Some(if n < 10 { "unit" } else { "teen" });
        } else if let Some(n) = tens_value(word) {
            match last {
                None | Some("hundred") => current += n,
                _ => break,
            }
            last = Some("tens");
        } else if word == "hundred" {
            if last.is_none() || last == Some("hundred") {
                break;
            }
            current = current.max(1) * 100;
            last = Some("hundred");
        } else if word == "thousand" {
            if last.is_none() {
                break;
            }
            total += current.max(1) * 1000;
            current = 0;
            last = Some("hundred");
        } else if word == "and"
            && last == Some("hundred")
            && words.get(used + 1).is_some_and(|w| unit_value(w).is_some() || tens_value(w).is_some())
        {
            // "one hundred and ten": the "and" belongs to the number.
        } else {
            break;
        }
        used += 1;
    }
    (total + current, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> String {
        normalize_text(text)
    }

    #[test]
    fn numbers_in_words_become_digits() {
        assert_eq!(n("set the thermostat to twenty one degrees"), "set the thermostat to 21 degrees");
        assert_eq!(n("twenty-one"), "21");
        assert_eq!(n("coolant pump flow one hundred and ten"), "coolant pump flow 110");
        assert_eq!(n("kiln temperature to eleven hundred"), "kiln temperature to 1100");
        assert_eq!(n("press one pressure two hundred"), "press 1 pressure 200");
        assert_eq!(n("seventy five percent"), "75 percent");
        assert_eq!(n("stop conveyor one and conveyor two"), "stop conveyor 1 and conveyor 2");
        assert_eq!(n("two thousand"), "2000");
        assert_eq!(n("1 hundred"), "100");
        assert_eq!(n("Coolant pump, flow 100 and 10."), "coolant pump flow 110");
    }

    #[test]
    fn punctuation_fillers_and_percent() {
        assert_eq!(n("Um, turn on the uh ceiling fan."), "turn on the ceiling fan");
        assert_eq!(n("Set the blinds to 50%."), "set the blinds to 50 percent");
        assert_eq!(n("What's on TV?"), "whats on tv");
    }

    #[test]
    fn clipped_first_sounds_are_repaired() {
        assert_eq!(n("Top the loading door."), "stop the loading door");
        assert_eq!(n("and lock the main door"), "unlock the main door");
        assert_eq!(n("lock the door and lock the gate"), "lock the door and lock the gate");
        assert_eq!(n("ventilation speed to"), "ventilation speed 2");
    }

    #[test]
    fn adjacent_separate_numbers_stay_separate() {
        assert_eq!(n("one two"), "1 2");
        assert_eq!(n("twenty thirty"), "20 30");
        assert_eq!(n("fan to speed one and the tv volume to 15"), "fan to speed 1 and the tv volume to 15");
    }
}
