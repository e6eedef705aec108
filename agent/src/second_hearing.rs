//! Hearing an utterance a second time. whisper tiny.en without a prompt is
//! fast (~160 ms for a short command on two cores) but mishears device names
//! ("turn on the port slide"); primed with the catalog's names it hears more
//! of them but costs ~3× as much, because the prompt's tokens go through the
//! decoder first. So the first transcription is unprimed, and only when its
//! transcript yields no command is the same audio transcribed once more,
//! primed with [`crate::stt::catalog_prompt`], and interpreted again. The
//! second reading is used only when it yields commands; they are validated
//! against the catalog and pass the confirmation policy like any other.
//!
//! Measured on the dev set (`tests/data/nlu_dev.jsonl`, 208 utterances over
//! three catalogs, espeak-ng, VAD-framed): exact commands 152 → 170, with 1.32
//! transcriptions per utterance on average and no command produced for a
//! non-command.

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
    /// The interpretation to use instead of the first: only one that yields commands.
    pub fn better(self) -> Option<(String, Interpretation)> {
        let text = self.text;
        self.interpretation.filter(|i| !i.commands.is_empty()).map(|i| (text, i))
    }
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
