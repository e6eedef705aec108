//! Hearing an utterance again. whisper tiny.en without a prompt is fast
//! (~160 ms for a short command on two cores) but mishears device names
//! ("turn on the port slide"); primed with the catalog it hears more of them
//! but costs ~3× as much, because the prompt's tokens go through the decoder
//! first. So the first transcription is unprimed, and only when its reading
//! misses something — no command, or fewer commands than the request has
//! clauses ("turn on the kitchen light and the boat light") — is the same
//! audio transcribed again: primed with the catalog's names
//! ([`crate::stt::catalog_prompt`]), then, if that still misses something,
//! with the catalog as example requests ([`crate::stt::catalog_sentences`]).
//! A further reading is used only when it yields more commands; they are
//! validated against the catalog and pass the confirmation policy like any
//! other.
//!
//! Measured on the dev set (`tests/data/nlu_dev.jsonl`, 208 utterances over
//! three catalogs, espeak-ng, VAD-framed, interpreted offline): exact
//! commands 152 (one transcription) → 174 (names) → 176 (names, then
//! sentences), with 1.61 transcriptions per utterance on average; no command
//! produced for a non-command.

use std::time::Duration;

use crate::intent::{Interpretation, Interpreter};
use crate::stt::SttClient;

/// One further reading of an utterance.
#[derive(Debug)]
pub struct SecondHearing {
    /// The primed transcript.
    pub text: String,
    /// The primed transcription's latency.
    pub stt_latency: Duration,
    /// What it was interpreted as; `None` when the transcript is not a
    /// request or the interpretation was refused.
    pub interpretation: Option<Interpretation>,
}

impl SecondHearing {
    /// The reading to use instead of `current`: only one that yields more commands.
    pub fn better_than(self, current: &Interpretation) -> Option<(String, Interpretation)> {
        let text = self.text;
        self.interpretation.filter(|i| i.commands.len() > current.commands.len()).map(|i| (text, i))
    }
}

/// Whether a reading of `request` misses something: fewer commands than the
/// request has clauses (at "and"/"then"; at least one), so also none at all.
pub fn misses_something(request: &str, interpretation: &Interpretation) -> bool {
    let words = crate::intent::normalize::normalize(request);
    let clauses = crate::intent::resolve::clauses(&words, &[]).len().max(1);
    interpretation.commands.len() < clauses
}

/// The prompts of the further hearings for a catalog, in the order they are
/// tried: the names, then one example request per device.
pub fn prompts(catalog: &crate::catalog::Catalog) -> Vec<String> {
    vec![crate::stt::catalog_prompt(catalog), crate::stt::catalog_sentences(catalog)]
}

/// What hearing an utterance again gave.
#[derive(Debug)]
pub struct Rehearing {
    /// Every reading in order, the first included.
    pub transcripts: Vec<String>,
    /// The reading used.
    pub text: String,
    /// Its interpretation.
    pub interpretation: Interpretation,
    /// Time spent in the further transcriptions.
    pub stt_latency: Duration,
    /// Time spent interpreting them.
    pub nlu_latency: Duration,
}

/// Hears `samples` again with each of `prompts` in turn while the reading in
/// use misses something of `request` (the first reading's request), keeping
/// a reading only when it yields more commands. `request_of` makes the
/// request of a further transcript (`None`: not a request). A first reading
/// that misses nothing, or no prompts, leave `transcripts` at one: the first.
pub async fn hear_until_complete(
    stt: &SttClient,
    interpreter: &Interpreter,
    samples: &[f32],
    prompts: &[String],
    request: &str,
    first: (String, Interpretation),
    request_of: impl Fn(&str) -> Option<String>,
) -> Rehearing {
    let (text, interpretation) = first;
    let mut rehearing = Rehearing {
        transcripts: vec![text.clone()],
        text,
        interpretation,
        stt_latency: Duration::ZERO,
        nlu_latency: Duration::ZERO,
    };
    for prompt in prompts {
        if !misses_something(request, &rehearing.interpretation) {
            break;
        }
        let Some(again) = hear_again(stt, interpreter, samples, prompt, &request_of).await else { break };
        rehearing.stt_latency += again.stt_latency;
        rehearing.nlu_latency += again.interpretation.as_ref().map_or(Duration::ZERO, |i| i.latency);
        rehearing.transcripts.push(again.text.clone());
        if let Some((text, better)) = again.better_than(&rehearing.interpretation) {
            rehearing.text = text;
            rehearing.interpretation = better;
        }
    }
    rehearing
}

/// Transcribes `samples` once more primed with `prompt` and interprets the
/// request that `request_of` makes of the transcript (`None`: not a request).
/// `None` when the transcription fails. Failures leave the first reading
/// standing, so they are logged, not returned.
async fn hear_again(
    stt: &SttClient,
    interpreter: &Interpreter,
    samples: &[f32],
    prompt: &str,
    request_of: &impl Fn(&str) -> Option<String>,
) -> Option<SecondHearing> {
    let transcript = match stt.transcribe(samples, crate::stt::Priming::prompt(Some(prompt))).await {
        Ok(transcript) => transcript,
        Err(e) => {
            tracing::warn!(error = %e, "another transcription failed; the reading so far stands");
            return None;
        }
    };
    let interpretation = match request_of(&transcript.text) {
        None => None,
        Some(request) => match interpreter.interpret(&request).await {
            Ok(interpretation) => Some(interpretation),
            Err(e) => {
                tracing::warn!(error = %e, "another reading refused; the reading so far stands");
                None
            }
        },
    };
    Some(SecondHearing { text: transcript.text, stt_latency: transcript.latency, interpretation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::command::Command;

    fn reading(commands: usize) -> Interpretation {
        let command = Command { device: "lamp".into(), action: "turn_on".into(), value: None };
        Interpretation {
            text: String::new(),
            commands: vec![command; commands],
            needs_confirmation: Vec::new(),
            no_command_reason: None,
            explanation: None,
            latency: Duration::ZERO,
            asked_model: false,
            model: None,
        }
    }

    fn second(commands: Option<usize>) -> SecondHearing {
        SecondHearing { text: "second".into(), stt_latency: Duration::ZERO, interpretation: commands.map(reading) }
    }

    #[test]
    fn a_reading_misses_something_when_a_clause_gave_no_command() {
        assert!(misses_something("what time is it", &reading(0)));
        assert!(!misses_something("turn on the lamp", &reading(1)));
        assert!(misses_something("turn on the kitchen light and the boat light", &reading(1)));
        assert!(!misses_something("turn on the kitchen light and the porch light", &reading(2)));
        assert!(!misses_something("", &reading(1)));
    }

    #[test]
    fn the_second_reading_is_used_only_when_it_yields_more_commands() {
        assert!(second(Some(1)).better_than(&reading(0)).is_some());
        assert!(second(Some(2)).better_than(&reading(1)).is_some());
        assert!(second(Some(1)).better_than(&reading(1)).is_none());
        assert!(second(Some(0)).better_than(&reading(0)).is_none());
        assert!(second(None).better_than(&reading(0)).is_none(), "not a request or refused");
    }
}
