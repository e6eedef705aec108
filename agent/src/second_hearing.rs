//! Hearing an utterance a second time. whisper tiny.en without a prompt is
//! fast (~160 ms for a short command on two cores) but mishears device names
//! ("turn on the port slide"); primed with the catalog's names it hears more
//! of them but costs ~3× as much, because the prompt's tokens go through the
//! decoder first. So the first transcription is unprimed, and only when its
//! reading misses something — no command, or fewer commands than the request
//! has clauses ("turn on the kitchen light and the boat light") — is the same
//! audio transcribed once more, primed with [`crate::stt::catalog_prompt`],
//! and interpreted again. The second reading is used only when it yields more
//! commands; they are validated against the catalog and pass the
//! confirmation policy like any other.
//!
//! Measured on the dev set (`tests/data/nlu_dev.jsonl`, 208 utterances over
//! three catalogs, espeak-ng, VAD-framed): exact commands 152 → 173, with
//! 1.36 transcriptions per utterance on average and no command produced for
//! a non-command.

use std::time::Duration;

use crate::nlu::{Interpretation, Interpreter};
use crate::stt::SttClient;

/// The second reading of an utterance.
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
    /// The reading to use instead of `first`: only one that yields more commands.
    pub fn better_than(self, first: &Interpretation) -> Option<(String, Interpretation)> {
        let text = self.text;
        self.interpretation.filter(|i| i.commands.len() > first.commands.len()).map(|i| (text, i))
    }
}

/// Whether a reading of `request` misses something: fewer commands than the
/// request has clauses (at "and"/"then"; at least one), so also none at all.
pub fn misses_something(request: &str, interpretation: &Interpretation) -> bool {
    let words = crate::nlu::normalize::normalize(request);
    let clauses = crate::nlu::resolve::clauses(&words, &[]).len().max(1);
    interpretation.commands.len() < clauses
}

/// Transcribes `samples` once more primed with `prompt` and interprets the
/// request that `request_of` makes of the transcript (`None`: not a request).
/// `None` when the transcription fails. Failures leave the first reading
/// standing, so they are logged, not returned.
pub async fn hear_again(
    stt: &SttClient,
    interpreter: &Interpreter,
    samples: &[f32],
    prompt: &str,
    request_of: impl Fn(&str) -> Option<String>,
) -> Option<SecondHearing> {
    let transcript = match stt.transcribe(samples, Some(prompt)).await {
        Ok(transcript) => transcript,
        Err(e) => {
            tracing::warn!(error = %e, "second transcription failed; the first stands");
            return None;
        }
    };
    let interpretation = match request_of(&transcript.text) {
        None => None,
        Some(request) => match interpreter.interpret(&request).await {
            Ok(interpretation) => Some(interpretation),
            Err(e) => {
                tracing::warn!(error = %e, "second reading refused; the first stands");
                None
            }
        },
    };
    Some(SecondHearing { text: transcript.text, stt_latency: transcript.latency, interpretation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn reading(commands: usize) -> Interpretation {
        let command = Command { device: "lamp".into(), action: "turn_on".into(), value: None };
        Interpretation {
            text: String::new(),
            commands: vec![command; commands],
            needs_confirmation: Vec::new(),
            no_command_reason: None,
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
