//! whisper.cpp with settings for short spoken commands.
//!
//! Greedy decoding, one segment, no temperature fallback, no context carried
//! between requests, and `audio_ctx` sized to the clip (the encoder then
//! works on the clip, not on 30 s of padding: ~3× faster). A shortened
//! `audio_ctx` makes tiny models loop ("turn on the light. turn on the
//! light. …") when timestamps are off, so timestamps stay on, the context
//! keeps a margin of [`AUDIO_CTX_MARGIN`] frames, the token count is capped
//! by the clip length, decoding ends at the first verbatim repeat
//! ([`crate::loop_breaker`]), and repeated phrases are removed from the text. On
//! the rare short clip where the shortened context yields no text at all,
//! the clip is decoded once more with the full context.

use std::path::Path;
use std::sync::Mutex;

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

/// Encoder frames kept beyond the clip (one frame is 20 ms).
pub const AUDIO_CTX_MARGIN: usize = 64;

/// Longest clip accepted: whisper's window.
pub const MAX_SAMPLES: usize = 30 * 16_000;

/// Errors of the transcription stage.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The model file could not be loaded.
    #[error("cannot load whisper model {path}: {reason}")]
    Load {
        /// The model path.
        path: String,
        /// whisper.cpp's complaint.
        reason: String,
    },
    /// The clip is longer than whisper's 30 s window.
    #[error("audio is {seconds:.1} s long; at most 30 s per request")]
    TooLong {
        /// The clip's length.
        seconds: f32,
    },
    /// Inference failed.
    #[error("whisper inference failed: {0}")]
    Inference(String),
}

/// One transcript and what it cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    /// The text, trimmed, with repeated phrases removed.
    pub text: String,
    /// Encoder frames used.
    pub audio_ctx: usize,
}

/// A loaded model with one decoding state; requests are served one at a time
/// (two ggml computations at once on a small box only slow each other down).
pub struct Transcriber {
    _context: WhisperContext,
    state: Mutex<WhisperState>,
    threads: usize,
}

impl Transcriber {
    /// Loads a ggml whisper model.
    pub fn load(path: &Path, threads: usize, use_gpu: bool) -> Result<Transcriber, TranscribeError> {
        let error = |reason: String| TranscribeError::Load { path: path.display().to_string(), reason };
        let parameters = WhisperContextParameters { use_gpu, ..WhisperContextParameters::default() };
        let context = WhisperContext::new_with_params(path, parameters).map_err(|e| error(e.to_string()))?;
        let state = context.create_state().map_err(|e| error(e.to_string()))?;
        Ok(Transcriber { _context: context, state: Mutex::new(state), threads: threads.max(1) })
    }

    /// Transcribes 16 kHz mono samples; `prompt` primes the vocabulary
    /// (device names) and `language` is an ISO code such as `en`. When the
    /// clip-sized context yields nothing, the clip is decoded once more with
    /// whisper's full context, which tiny models need on some short clips.
    pub fn transcribe(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        language: &str,
    ) -> Result<Transcript, TranscribeError> {
        if samples.len() > MAX_SAMPLES {
            return Err(TranscribeError::TooLong { seconds: samples.len() as f32 / 16_000.0 });
        }
        let clip_ctx = (samples.len().div_ceil(320) + AUDIO_CTX_MARGIN).min(1500);
        let first = self.decode(samples, prompt, language, clip_ctx)?;
        if !first.text.is_empty() || clip_ctx == 1500 {
            return Ok(first);
        }
        self.decode(samples, prompt, language, 1500)
    }

    fn decode(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        language: &str,
        audio_ctx: usize,
    ) -> Result<Transcript, TranscribeError> {
        let seconds = samples.len().div_ceil(16_000);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(false);
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        params.set_audio_ctx(audio_ctx as i32);
        params.set_max_tokens((16 + 8 * seconds).min(224) as i32);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        crate::loop_breaker::install(&mut params);
        if let Some(prompt) = prompt.filter(|p| !p.trim().is_empty()) {
            params.set_initial_prompt(prompt);
        }
        // whisper.cpp needs at least 1 s; pad short clips with silence.
        let mut padded;
        let audio = if samples.len() < 16_000 + 1_600 {
            padded = samples.to_vec();
            padded.resize(16_000 + 1_600, 0.0);
            &padded[..]
        } else {
            samples
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.full(params, audio).map_err(|e| TranscribeError::Inference(e.to_string()))?;
        let mut text = String::new();
        for segment in state.as_iter() {
            let piece = segment.to_str_lossy().map_err(|e| TranscribeError::Inference(e.to_string()))?;
            text.push_str(&piece);
        }
        drop(state);
        Ok(Transcript { text: remove_repeats(text.trim()), audio_ctx })
    }
}

/// Cuts a decoding loop out of a transcript: when the words from some point
/// on repeat the words before them periodically ("turn off the lamp. turn
/// off the" → "turn off the lamp."), only the first period is kept; the
/// last word may be cut short. Words without letters or digits ("( ( (")
/// are dropped.
pub fn remove_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).collect();
    let key = |w: &str| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    let keys: Vec<String> = words.iter().map(|w| key(w)).collect();
    let n = keys.len();
    let repeats_from = |period: usize| {
        (period..n).all(|i| {
            let (now, then) = (&keys[i], &keys[i - period]);
            now == then || (i == n - 1 && !now.is_empty() && then.starts_with(now.as_str()))
        })
    };
    let periodic = (1..n).find(|&period| n - period >= 2 && repeats_from(period));
    // A first sentence of three or more words that comes back verbatim starts a loop too.
    let first_sentence =
        words.iter().position(|w| w.ends_with(['.', '!', '?'])).map(|end| end + 1).filter(|&len| len >= 3);
    let restarted =
        first_sentence.and_then(|len| (len..n.saturating_sub(len - 1)).find(|&at| keys[at..at + len] == keys[..len]));
    let cut = periodic.into_iter().chain(restarted).min().unwrap_or(n);
    words[..cut].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_phrases_are_removed_and_distinct_ones_kept() {
        assert_eq!(remove_repeats("Turn on the light. Turn on the light. turn on the light."), "Turn on the light.");
        assert_eq!(
            remove_repeats("Turn off the living room lamp. Turn off the living"),
            "Turn off the living room lamp."
        );
        assert_eq!(remove_repeats("Stop conveyor 2, stop convey"), "Stop conveyor 2,");
        assert_eq!(remove_repeats("Turn the TV volume down to 20 ( ( ("), "Turn the TV volume down to 20");
        assert_eq!(remove_repeats("turn on the light and turn on the fan"), "turn on the light and turn on the fan");
        assert_eq!(remove_repeats("Lights on, fan off."), "Lights on, fan off.");
        assert_eq!(remove_repeats("no no"), "no no");
        assert_eq!(
            remove_repeats(
                "Set the kill to 900 big reason. Set the kill to 900 big reason. Set the kill to 900 hundred big"
            ),
            "Set the kill to 900 big reason."
        );
        assert_eq!(remove_repeats(""), "");
    }
}
