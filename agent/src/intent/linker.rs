//! Finding the catalog's devices and areas in a transcript, including the
//! near-misses a fast recognizer produces ("garbage door", "bump free",
//! "can may or two"). Every name, alias, id and area becomes a phonetic key
//! (sounds that recognizers confuse are folded together, vowels collapsed);
//! windows of the transcript are compared with those keys by edit distance,
//! and the best non-overlapping matches win.

use crate::catalog::Catalog;

/// What a stretch of the transcript refers to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A device, by index in the catalog.
    Device(usize),
    /// An area, by name.
    Area(String),
    /// A floor, by name.
    Floor(String),
    /// Every device whose name ends in this word ("all the lights"), singular.
    Group(String),
}

/// One match of a catalog name in the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Mention {
    /// What was found.
    pub target: Target,
    /// First word of the match (in the normalized words).
    pub start: usize,
    /// One past the last word.
    pub end: usize,
    /// Similarity (1.05 = the very words of the catalog): the mean of the
    /// phonetic and the spelling similarity, plus a little for matching word onsets.
    pub score: f64,
}

/// A catalog name prepared for matching.
struct Form {
    target: Target,
    words: usize,
    key: String,
    spelled: String,
    onsets: String,
}

/// Lowest similarity accepted for a fuzzy match.
const MIN_SIMILARITY: f64 = 0.72;

/// Words that never start or end a device mention on their own.
const GLUE: &[&str] = &[
    "the",
    "a",
    "an",
    "my",
    "to",
    "and",
    "on",
    "off",
    "of",
    "in",
    "at",
    "for",
    "it",
    "is",
    "up",
    "down",
    "set",
    "turn",
    "switch",
    "with",
    "all",
    "some",
    "this",
    "that",
    "please",
    "then",
    "also",
    "setting",
    "sets",
    "turning",
    "turns",
    "switching",
    "switches",
];

/// Whether a word is one of the little words that never start or end a name.
pub fn is_glue(word: &str) -> bool {
    GLUE.contains(&word)
}

/// Matches transcripts against one catalog's names; built once per catalog.
pub struct Linker {
    forms: Vec<Form>,
}

impl Linker {
    /// Prepares every device name, alias, id (underscores as spaces) and area.
    pub fn new(catalog: &Catalog) -> Linker {
        let mut forms = Vec::new();
        let mut add = |target: Target, text: &str| {
            let words = super::normalize::normalize(text);
            if words.is_empty() {
                return;
            }
            let key = phonetic_key(&words);
            if !forms.iter().any(|f: &Form| f.target == target && f.key == key) {
                forms.push(Form { target, words: words.len(), key, spelled: spell(&words), onsets: onsets(&words) });
            }
        };
        for (index, device) in catalog.devices.iter().enumerate() {
            add(Target::Device(index), &device.name);
            for alias in &device.aliases {
                add(Target::Device(index), alias);
            }
            add(Target::Device(index), &device.id.replace('_', " "));
        }
        for area in &catalog.areas {
            add(Target::Area(area.name.clone()), &area.name);
            for alias in &area.aliases {
                add(Target::Area(area.name.clone()), alias);
            }
        }
        for floor in &catalog.floors {
            add(Target::Floor(floor.name.clone()), &floor.name);
            for alias in &floor.aliases {
                add(Target::Floor(floor.name.clone()), alias);
            }
        }
        // "the press" for "press one" when no other device is a press.
        for (index, head) in numbered_heads(catalog) {
            add(Target::Device(index), &head);
        }
        Linker { forms }
    }

    /// The best non-overlapping mentions in `words` (normalized), in text order.
    pub fn find(&self, words: &[String]) -> Vec<Mention> {
        let mut candidates = Vec::new();
        for form in &self.forms {
            let shortest = form.words.saturating_sub(1).max(1);
            for len in shortest..=form.words + 2 {
                for start in 0..words.len().saturating_sub(len - 1) {
                    let window = &words[start..start + len];
                    let key = phonetic_key(window);
                    let sounds = similarity(&key, &form.key);
                    // A window may start or end with a little word only when it is more
                    // than that word and sounds almost exactly like the name ("and on
                    // light" for "andon light"); "all" alone is never the hall.
                    let glued = GLUE.contains(&window[0].as_str()) || GLUE.contains(&window[len - 1].as_str());
                    if glued && (len == 1 || sounds < 0.9) {
                        continue;
                    }
                    if sounds < needed_similarity(form.key.len()) || key.len() > form.key.len() + 2 {
                        continue;
                    }
                    // Short names must also be spelled nearly alike ("what" sounds like "heat").
                    let spelling = similarity(&spell(window), &form.spelled);
                    if spelling < needed_spelling(form.key.len()) {
                        continue;
                    }
                    {
                        // Equal sounds: the closer spelling wins, then the word onsets, which
                        // recognizers keep best ("conveyor tube" is "conveyor two", not "one").
                        let score = (sounds + spelling) / 2.0 + 0.05 * similarity(&onsets(window), &form.onsets);
                        candidates.push(Mention { target: form.target.clone(), start, end: start + len, score });
                    }
                }
            }
        }
        // Best first, a match that explains more words a little ahead ("kitchen lite" over the
        // area "kitchen"); on a tie devices before areas.
        let rank = |m: &Mention| {
            let area_penalty = if matches!(m.target, Target::Area(_) | Target::Floor(_)) { 0.2 } else { 0.0 };
            m.score + 0.06 * (m.end - m.start - 1) as f64 - area_penalty
        };
        candidates.sort_by(|a, b| {
            rank(b).total_cmp(&rank(a)).then(
                matches!(a.target, Target::Area(_) | Target::Floor(_))
                    .cmp(&matches!(b.target, Target::Area(_) | Target::Floor(_))),
            )
        });
        let mut chosen: Vec<Mention> = Vec::new();
        for candidate in candidates {
            let overlaps = chosen.iter().any(|c| candidate.start < c.end && c.start < candidate.end);
            if !overlaps {
                chosen.push(candidate);
            }
        }
        chosen.sort_by_key(|m| m.start);
        chosen
    }
}

/// Short keys ("tv", "kiln") sound like too many other words to match loosely.
fn needed_similarity(key_len: usize) -> f64 {
    match key_len {
        0..=4 => 1.0,
        5 => 0.8,
        _ => MIN_SIMILARITY,
    }
}

/// How alike the spelling must be besides the sound: short names sound like
/// many words ("what" like "heat", "volume" like "vacuum"); long ones can be
/// badly misspelled and still be clear ("can may or two").
fn needed_spelling(key_len: usize) -> f64 {
    match key_len {
        0..=4 => 0.6,
        5..=7 => 0.45,
        _ => 0.3,
    }
}

/// Names that end in a number ("press one", "pump 3") without the number,
/// for the devices that are the only one with that head.
fn numbered_heads(catalog: &Catalog) -> Vec<(usize, String)> {
    let mut heads: Vec<(usize, String)> = Vec::new();
    for (index, device) in catalog.devices.iter().enumerate() {
        for name in std::iter::once(&device.name).chain(&device.aliases) {
            let words = super::normalize::normalize(name);
            if words.len() >= 2 && words.last().is_some_and(|w| w.parse::<u64>().is_ok()) {
                let head = words[..words.len() - 1].join(" ");
                if !heads.iter().any(|(i, h)| *i == index && *h == head) {
                    heads.push((index, head));
                }
            }
        }
    }
    let mut unique = Vec::new();
    for (index, head) in &heads {
        let owners =
            heads.iter().filter(|(_, h)| h == head).map(|(i, _)| *i).collect::<std::collections::BTreeSet<_>>();
        let taken = catalog
            .devices
            .iter()
            .any(|d| std::iter::once(&d.name).chain(&d.aliases).any(|n| super::normalize::normalize_text(n) == *head));
        if owners.len() == 1 && !taken {
            unique.push((*index, head.clone()));
        }
    }
    unique
}

/// Spoken forms of digits, so "2" sounds like "two", "to" and "do".
const DIGIT_WORDS: &[&str] = &["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// The first letter of each word, digits spelled ("conveyor 2" → "ct").
fn onsets(words: &[String]) -> String {
    words.iter().filter_map(|w| spell(std::slice::from_ref(w)).chars().next()).collect()
}

/// The words run together, digits below ten spelled out.
fn spell(words: &[String]) -> String {
    let mut spelled = String::new();
    for word in words {
        match word.parse::<usize>() {
            Ok(n) if n < 10 => spelled.push_str(DIGIT_WORDS[n]),
            _ => spelled.push_str(word),
        }
    }
    spelled
}

/// A key in which sounds recognizers confuse are the same letters: voiced
/// and unvoiced pairs (b/p, d/t, g/k, v/f, z/s), th/f ("free" for "three"),
/// c/k/q, r/l, silent gh, h, w and final e; vowels become one `a` and repeats collapse.
pub fn phonetic_key(words: &[String]) -> String {
    // A silent final "e" ("lite", "whole") says nothing about the sound.
    let trimmed: Vec<String> = words
        .iter()
        .map(|w| match w.strip_suffix('e') {
            Some(stem) if stem.len() >= 3 && !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => stem.to_owned(),
            _ => w.clone(),
        })
        .collect();
    let s = spell(&trimmed)
        .replace('x', "ks")
        .replace("tion", "shan")
        .replace("ph", "f")
        .replace("th", "f")
        .replace("gh", "")
        .replace("ck", "k")
        .replace("ch", "x")
        .replace("sh", "x")
        .replace("wh", "w")
        .replace("qu", "kw")
        .replace("kn", "n")
        .replace("wr", "r");
    let mut key = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let mapped = match c {
            'a' | 'e' | 'i' | 'o' | 'u' | 'y' => 'a',
            // h and w are breath: "whole" and "hall" sound alike.
            'h' | 'w' => continue,
            'b' | 'p' => 'p',
            'd' | 't' => 't',
            'g' | 'k' | 'q' => 'k',
            'c' => {
                if matches!(chars.get(i + 1), Some('e' | 'i' | 'y')) {
                    's'
                } else {
                    'k'
                }
            }
            'v' | 'f' => 'f',
            'z' | 's' => 's',
            'j' | 'x' => 'x',
            // Synthetic and accented speech swap them: "ramp" for "lamp".
            'r' => 'l',
            other => other,
        };
        if key.ends_with(mapped) {
            continue;
        }
        key.push(mapped);
    }
    key
}

/// 1 − edit distance / longer length.
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    1.0 - previous[b.len()] as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::intent::normalize::normalize;
    use std::path::Path;

    fn catalog(name: &str) -> Catalog {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("devices").join(name);
        Catalog::load(&path).unwrap()
    }

    fn devices(catalog: &Catalog, text: &str) -> Vec<String> {
        let linker = Linker::new(catalog);
        linker
            .find(&normalize(text))
            .into_iter()
            .filter_map(|m| match m.target {
                Target::Device(i) => Some(catalog.devices[i].id.clone()),
                Target::Area(_) | Target::Floor(_) | Target::Group(_) => None,
            })
            .collect()
    }

    #[test]
    fn recognizer_near_misses_find_the_device() {
        let factory = catalog("factory.toml");
        assert_eq!(devices(&factory, "stop can may or two"), ["conveyor_2"]);
        assert_eq!(devices(&factory, "start bump free"), ["pump_3"]);
        assert_eq!(devices(&factory, "stop conveyor tube"), ["conveyor_2"]);
        assert_eq!(devices(&factory, "open the loading dog door"), ["loading_dock_door"]);
        let home = catalog("home.toml");
        assert_eq!(devices(&home, "open the garbage door"), ["garage_door"]);
        assert_eq!(devices(&home, "turn on the kitchen lite"), ["kitchen_light"]);
        assert_eq!(devices(&home, "turn off the ramp and the tv"), ["living_room_lamp", "tv"]);
    }

    #[test]
    fn a_unique_head_noun_names_its_numbered_device() {
        let factory = catalog("factory.toml");
        assert_eq!(devices(&factory, "set the press to 120 bar"), ["press_1"]);
        assert!(devices(&factory, "start the pump").is_empty(), "two pumps: ambiguous");
    }

    #[test]
    fn several_devices_in_one_utterance() {
        let home = catalog("home.toml");
        assert_eq!(devices(&home, "turn off the kitchen light and the fan"), ["kitchen_light", "ceiling_fan"]);
    }

    #[test]
    fn unrelated_words_match_nothing() {
        let home = catalog("home.toml");
        assert!(devices(&home, "what time is it").is_empty());
        assert!(devices(&home, "tell me a joke").is_empty());
    }

    #[test]
    fn similarity_is_one_minus_normalized_distance() {
        assert_eq!(similarity("abc", "abc"), 1.0);
        assert_eq!(similarity("abc", "abd"), 1.0 - 1.0 / 3.0);
        assert_eq!(similarity("", ""), 1.0);
    }
}
