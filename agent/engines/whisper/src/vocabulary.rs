//! The site's vocabulary while decoding: a request may name phrases (device
//! names, aliases, areas) that the decoder should favour. Each phrase is
//! tokenized as whisper writes a word inside a sentence (leading space;
//! lower case, capitalized, title case), and before every decoder step the
//! logits filter adds
//!
//! - [`CONTINUE_BOOST`] to the next token of every phrase whose first tokens
//!   the text ends in ("… the porch" → " light"), and
//! - [`START_BOOST`] to the first token of every phrase whose first word is
//!   one token (" porch"; not " off" of " off"+"ice", which would put "off"
//!   where "office" was never said).
//!
//! The boosts are small next to what the audio says, so they tip close
//! calls ("port slide" / "porch light") and cannot put a name where nothing
//! like it was said; a priming prompt does the same job at ~3× the decoding
//! cost (its tokens go through the decoder first). Where a boost changed the
//! decoder's choice, the step's unboosted choice is kept, so the reply can
//! carry the free reading beside the boosted one.

use std::collections::HashMap;

use whisper_rs::WhisperContext;

/// Added to the first token of every phrase at every step (logits; tuned on
/// the tune half of `hearken bench hearing`: 2/4 gave 375/400 exact, 3/6 378/400).
pub const START_BOOST: f32 = 3.0;

/// Added to the token that continues a phrase the text has begun.
pub const CONTINUE_BOOST: f32 = 6.0;

/// Longest phrase in tokens, and most phrases taken: a request cannot make
/// the per-step work large.
const MAX_PHRASE_TOKENS: usize = 16;
const MAX_PHRASES: usize = 2_000;

/// Phrases as token sequences.
#[derive(Debug, Default)]
pub struct Vocabulary {
    phrases: Vec<Phrase>,
}

/// One spelling of a phrase.
#[derive(Debug, Clone, PartialEq)]
struct Phrase {
    tokens: Vec<i32>,
    /// Whether its first token is its whole first word (then it may be started).
    startable: bool,
}

/// A step where a boost changed the decoder's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The text tokens before the step.
    pub before: Vec<i32>,
    /// What the decoder would have chosen without the boosts.
    pub free: i32,
    /// What it chose with them (the best text token after boosting).
    pub boosted: i32,
}

impl Vocabulary {
    /// Tokenizes `phrases` with the model's vocabulary (blank phrases and
    /// ones that do not tokenize are skipped).
    pub fn new(context: &WhisperContext, phrases: &[String]) -> Vocabulary {
        let mut sequences: Vec<Phrase> = Vec::new();
        for phrase in phrases.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            for variant in spellings(phrase) {
                let Some(tokens) = tokenize(context, &format!(" {variant}")) else { continue };
                let first_word = variant.split(' ').next().unwrap_or_default();
                let startable = tokenize(context, &format!(" {first_word}")).is_some_and(|t| t.len() == 1);
                if !tokens.is_empty()
                    && tokens.len() <= MAX_PHRASE_TOKENS
                    && !sequences.iter().any(|p| p.tokens == tokens)
                {
                    sequences.push(Phrase { tokens, startable });
                }
            }
            if sequences.len() >= MAX_PHRASES {
                break;
            }
        }
        Vocabulary { phrases: sequences }
    }

    /// A vocabulary of already tokenized phrases, each startable or not (tests).
    #[cfg(test)]
    fn from_tokens(phrases: Vec<(Vec<i32>, bool)>) -> Vocabulary {
        Vocabulary { phrases: phrases.into_iter().map(|(tokens, startable)| Phrase { tokens, startable }).collect() }
    }

    /// Whether there is nothing to favour.
    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// The boost of each favoured token after the text tokens `text`: the
    /// larger where a token both starts and continues phrases.
    pub fn boosts(&self, text: &[i32]) -> HashMap<i32, f32> {
        let mut boosts: HashMap<i32, f32> = HashMap::new();
        let mut raise = |token: i32, by: f32| {
            let entry = boosts.entry(token).or_insert(0.0);
            *entry = entry.max(by);
        };
        for Phrase { tokens: phrase, startable } in &self.phrases {
            if *startable {
                raise(phrase[0], START_BOOST);
            }
            let longest = (phrase.len() - 1).min(text.len());
            if let Some(begun) = (1..=longest).rev().find(|&k| text.ends_with(&phrase[..k])) {
                raise(phrase[begun], CONTINUE_BOOST);
            }
        }
        boosts
    }

    /// Boosts one step's logits (`text_end`: the first non-text token id,
    /// whisper's first timestamp) and returns the change it made to the best
    /// text token, if any.
    pub fn apply(&self, text: &[i32], logits: &mut [f32], text_end: usize) -> Option<Change> {
        let best = |logits: &[f32]| {
            logits[..text_end.min(logits.len())]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .and_then(|(id, _)| i32::try_from(id).ok())
        };
        let free = best(logits)?;
        for (token, boost) in self.boosts(text) {
            if let Some(logit) = usize::try_from(token).ok().and_then(|t| logits.get_mut(t)) {
                *logit += boost;
            }
        }
        let boosted = best(logits)?;
        (boosted != free).then(|| Change { before: text.to_vec(), free, boosted })
    }
}

/// Longest phrase tokenized, in bytes.
const MAX_PHRASE_BYTES: usize = 128;

/// `text` as the model's tokens; `None` when it cannot be tokenized or is
/// longer than [`MAX_PHRASE_BYTES`]. whisper.cpp answers `-n` when the text
/// needs more than the room given, which whisper-rs 0.16 takes for a length
/// (undefined behaviour); byte-level BPE never makes more tokens than bytes,
/// so room for one token per byte is always enough.
fn tokenize(context: &WhisperContext, text: &str) -> Option<Vec<i32>> {
    if text.len() > MAX_PHRASE_BYTES {
        return None;
    }
    context.tokenize(text, text.len() + 1).ok()
}

/// The spellings whisper writes a phrase in: as given ("TV"), in lower
/// case, capitalized, and every word capitalized.
fn spellings(phrase: &str) -> Vec<String> {
    let lower = phrase.to_lowercase();
    let capitalize = |word: &str| {
        let mut chars = word.chars();
        chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
    };
    let title = lower.split(' ').map(capitalize).collect::<Vec<_>>().join(" ");
    let mut spellings: Vec<String> = Vec::new();
    for spelling in [phrase.to_owned(), lower.clone(), capitalize(&lower), title] {
        if !spellings.contains(&spelling) {
            spellings.push(spelling);
        }
    }
    spellings
}

/// The free reading of a decoded text: `tokens` (text tokens) with each
/// boosted choice of `changes` replaced by the decoder's unboosted choice at
/// that step. `None` when no change took effect.
pub fn free_tokens(tokens: &[i32], changes: &[Change]) -> Option<Vec<i32>> {
    let mut free = tokens.to_vec();
    let mut changed = false;
    for change in changes {
        let at = change.before.len();
        if tokens.get(at) == Some(&change.boosted) && tokens[..at] == change.before[..] {
            free[at] = change.free;
            changed = true;
        }
    }
    changed.then_some(free)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_begun_phrase_is_continued_and_every_phrase_can_start() {
        // " porch" " light", " kitchen" " light"
        let vocabulary =
            Vocabulary::from_tokens(vec![(vec![10, 11], true), (vec![20, 11], true), (vec![30, 31, 32], false)]);
        let boosts = vocabulary.boosts(&[1, 2]);
        assert_eq!(boosts[&10], START_BOOST);
        assert_eq!(boosts.get(&30), None, "a first word of several tokens is not started");
        assert_eq!(boosts.get(&11), None, "nothing begun");
        let boosts = vocabulary.boosts(&[1, 10]);
        assert_eq!(boosts[&11], CONTINUE_BOOST);
        let boosts = vocabulary.boosts(&[30, 31]);
        assert_eq!(boosts[&32], CONTINUE_BOOST);
        assert_eq!(boosts.get(&31), None, "only the longest begun part continues");
    }

    #[test]
    fn a_close_call_is_tipped_and_recorded_a_clear_one_is_not() {
        let vocabulary = Vocabulary::from_tokens(vec![(vec![3, 4], true)]);
        // Token 2 leads token 3 by 1.0: the start boost tips it.
        let mut logits = vec![0.0, 0.0, 5.0, 4.0, 0.0, 9.0];
        let change = vocabulary.apply(&[7], &mut logits, 5).unwrap();
        assert_eq!((change.free, change.boosted), (2, 3));
        // Token 2 leads by 4.0: it stays.
        let mut logits = vec![0.0, 0.0, 8.0, 4.0, 0.0, 9.0];
        assert_eq!(vocabulary.apply(&[7], &mut logits, 5), None);
        // Timestamps (at and past `text_end`) are not text: never the best text token.
        let mut logits = vec![0.0, 0.0, 1.0, 0.5, 0.0, 50.0];
        assert_eq!(vocabulary.apply(&[7], &mut logits, 5).map(|c| c.boosted), Some(3));
    }

    #[test]
    fn the_free_reading_undoes_each_change_that_took_effect() {
        let changes = vec![Change { before: vec![1, 2], free: 8, boosted: 3 }];
        assert_eq!(free_tokens(&[1, 2, 3, 4], &changes), Some(vec![1, 2, 8, 4]));
        // The decoder took something else at that step (a timestamp came first, …).
        assert_eq!(free_tokens(&[1, 2, 5, 4], &changes), None);
        assert_eq!(free_tokens(&[1, 2], &changes), None);
    }

    #[test]
    fn phrases_are_spelled_as_whisper_writes_them_inside_a_sentence() {
        assert_eq!(spellings("porch light"), ["porch light", "Porch light", "Porch Light"]);
        assert_eq!(spellings("TV"), ["TV", "tv", "Tv"]);
    }
}
