//! Which utterances are meant for hearken, and spoken answers to a pending
//! confirmation. Pure functions over transcripts, matched on normalized,
//! phonetic words so transcription slips ("hey harken", "a hearken") still count.

use crate::intent::linker::{phonetic_key, similarity};
use crate::intent::normalize::normalize;

/// How similar the start of a transcript must sound to the wake phrase.
const WAKE_SIMILARITY: f64 = 0.8;

/// If `text` starts with the wake phrase, the rest of it (possibly empty);
/// otherwise `None`.
pub fn strip_wake_phrase(text: &str, phrase: &str) -> Option<String> {
    let words = normalize(text);
    let phrase_words = normalize(phrase);
    let target = phonetic_key(&phrase_words);
    if target.is_empty() {
        return None;
    }
    let n = phrase_words.len();
    let mut best: Option<(f64, usize)> = None;
    for k in n.saturating_sub(1).max(1)..=(n + 1).min(words.len()) {
        let score = similarity(&phonetic_key(&words[..k]), &target);
        if score >= WAKE_SIMILARITY && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, k));
        }
    }
    best.map(|(_, k)| words[k..].join(" "))
}

/// A spoken answer to a pending confirmation: `Some(true)` to confirm,
/// `Some(false)` to cancel, `None` when the utterance is something else.
pub fn confirmation_answer(text: &str) -> Option<bool> {
    let words = normalize(text);
    if words.is_empty() || words.len() > 4 {
        return None;
    }
    let first = words[0].as_str();
    let joined = words.join(" ");
    const CONFIRM: &[&str] = &["confirm", "confirmed", "yes", "yeah", "yep", "ok", "okay", "affirmative", "sure"];
    const CANCEL: &[&str] = &["cancel", "cancelled", "canceled", "no", "nope", "abort", "negative"];
    if CONFIRM.contains(&first) || joined.starts_with("do it") || joined.starts_with("go ahead") {
        Some(true)
    } else if CANCEL.contains(&first) || joined.starts_with("never mind") || joined.starts_with("dont") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_wake_phrase_is_stripped_even_when_misheard() {
        let phrase = "hey hearken";
        assert_eq!(strip_wake_phrase("Hey Hearken, turn on the lamp.", phrase).as_deref(), Some("turn on the lamp"));
        assert_eq!(strip_wake_phrase("Hey harken turn on the lamp", phrase).as_deref(), Some("turn on the lamp"));
        assert_eq!(strip_wake_phrase("A hearken, stop conveyor two", phrase).as_deref(), Some("stop conveyor 2"));
        assert_eq!(strip_wake_phrase("Hearken, open the blinds", phrase).as_deref(), Some("open the blinds"));
        assert_eq!(strip_wake_phrase("Hey hearken.", phrase).as_deref(), Some(""));
    }

    #[test]
    fn other_utterances_are_not_for_us() {
        let phrase = "hey hearken";
        assert_eq!(strip_wake_phrase("turn on the lamp", phrase), None);
        assert_eq!(strip_wake_phrase("hey siri turn on the lamp", phrase), None);
        assert_eq!(strip_wake_phrase("", phrase), None);
        assert_eq!(strip_wake_phrase("I heard the kitchen light", phrase), None);
    }

    #[test]
    fn spoken_answers_to_a_confirmation() {
        assert_eq!(confirmation_answer("Confirm."), Some(true));
        assert_eq!(confirmation_answer("Yes, do it"), Some(true));
        assert_eq!(confirmation_answer("Cancel"), Some(false));
        assert_eq!(confirmation_answer("No."), Some(false));
        assert_eq!(confirmation_answer("turn on the kitchen light"), None);
        assert_eq!(confirmation_answer("yes turn on the kitchen light and the fan please"), None);
    }
}
