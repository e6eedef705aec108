//! whisper.cpp with settings for short spoken commands.
//!
//! Greedy decoding, one segment, no temperature fallback, no context carried
//! between requests, and `audio_ctx` sized to the clip (the encoder then
//! works on the clip, not on 30 s of padding: ~3× faster). A shortened
//! `audio_ctx` makes tiny models loop ("turn on the light. turn on the
//! light. …") when timestamps are off, so timestamps stay on, the context
//! keeps a margin of [`AUDIO_CTX_MARGIN`] frames, the token count is capped
//! by the clip length, decoding ends at the first verbatim repeat
//! ([`crate::logits_filter`]), and repeated phrases are removed from the text. On
//! the rare short clip where the shortened context yields no text at all,
//! the clip is decoded once more with the full context.

use std::path::Path;
use std::sync::{Arc, Mutex};

use hearken_engine_api::cores::ThreadBudget;

use crate::logits_filter::{self, Steps};
use crate::vocabulary::{self, Vocabulary};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

/// Encoder frames kept beyond the clip (one frame is 20 ms).
pub const AUDIO_CTX_MARGIN: usize = 64;

/// Longest piece whisper decodes at once: its window. A longer clip is cut
/// into pieces of at most this, each at the quietest point of its last
/// [`CUT_SEARCH_SAMPLES`].
pub const MAX_SAMPLES: usize = 30 * 16_000;

/// Where a cut of a long clip is looked for: the last 10 s of a piece.
pub const CUT_SEARCH_SAMPLES: usize = 10 * 16_000;

/// The stretch whose energy decides a cut: 100 ms.
const CUT_FRAME_SAMPLES: usize = 1_600;

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
    /// Threads it ran on (fewer than the most when other work kept cores busy).
    pub threads: usize,
    /// The reading without the vocabulary's boosts, where they changed a
    /// word ([`crate::vocabulary`]); `None` when they changed nothing.
    pub free_text: Option<String>,
}

/// A loaded model with one decoding state; requests are served one at a time
/// (two ggml computations at once on a small box only slow each other down).
pub struct Transcriber {
    context: WhisperContext,
    state: Mutex<WhisperState>,
    threads: ThreadBudget,
    /// The last vocabulary asked for, tokenized (a site sends the same one
    /// with every request; tokenizing ~500 spellings takes tens of ms).
    last_vocabulary: Mutex<Option<(Vec<String>, Arc<Vocabulary>)>>,
}

impl Transcriber {
    /// Loads a ggml whisper model.
    pub fn load(path: &Path, threads: ThreadBudget, use_gpu: bool) -> Result<Transcriber, TranscribeError> {
        let error = |reason: String| TranscribeError::Load { path: path.display().to_string(), reason };
        let parameters = WhisperContextParameters { use_gpu, ..WhisperContextParameters::default() };
        let context = WhisperContext::new_with_params(path, parameters).map_err(|e| error(e.to_string()))?;
        let state = context.create_state().map_err(|e| error(e.to_string()))?;
        Ok(Transcriber { context, state: Mutex::new(state), threads, last_vocabulary: Mutex::new(None) })
    }

    /// The site's phrases (device names, aliases, areas, action words) as
    /// this model tokenizes them; the last one is kept.
    pub fn vocabulary(&self, phrases: &[String]) -> Arc<Vocabulary> {
        let mut last = self.last_vocabulary.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((kept, vocabulary)) = last.as_ref() {
            if kept == phrases {
                return vocabulary.clone();
            }
        }
        let vocabulary = Arc::new(Vocabulary::new(&self.context, phrases));
        *last = Some((phrases.to_vec(), vocabulary.clone()));
        vocabulary
    }

    /// Transcribes 16 kHz mono samples; `prompt` primes the decoder with
    /// preceding text, `vocabulary` is favoured while decoding, and
    /// `language` is an ISO code such as `en`. When the clip-sized context
    /// yields nothing, the clip is decoded once more with whisper's full
    /// context, which tiny models need on some short clips.
    pub fn transcribe(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        vocabulary: &Vocabulary,
        language: &str,
    ) -> Result<Transcript, TranscribeError> {
        let threads = self.threads.now();
        let (mut text, mut free) = (Vec::new(), Vec::new());
        let mut audio_ctx = 0;
        let mut boosted = false;
        for piece in pieces(samples) {
            let transcript = self.transcribe_piece(piece, prompt, vocabulary, language, threads)?;
            audio_ctx = audio_ctx.max(transcript.audio_ctx);
            boosted |= transcript.free_text.is_some();
            let free_text = transcript.free_text.as_deref().unwrap_or(&transcript.text);
            if !free_text.is_empty() {
                free.push(free_text.to_owned());
            }
            if !transcript.text.is_empty() {
                text.push(transcript.text);
            }
        }
        let free_text = boosted.then(|| free.join(" "));
        Ok(Transcript { text: text.join(" "), audio_ctx, threads, free_text })
    }

    /// One piece of at most 30 s. With the context sized to the clip, tiny
    /// models sometimes give nothing or say a short clip twice ("Calling
    /// Calling", "15th 15th"): then the clip is decoded again with whisper's
    /// full context, which it was trained on, and that reading is kept (a
    /// word really said twice, "no no", comes out twice there too).
    fn transcribe_piece(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        vocabulary: &Vocabulary,
        language: &str,
        threads: usize,
    ) -> Result<Transcript, TranscribeError> {
        let clip_ctx = (samples.len().div_ceil(320) + AUDIO_CTX_MARGIN).min(1500);
        let first = self.decode(samples, prompt, vocabulary, language, clip_ctx, threads)?;
        let suspicious = first.text.is_empty() || said_twice(&first.text);
        if !suspicious || clip_ctx == 1500 {
            return Ok(first);
        }
        let full = self.decode(samples, prompt, vocabulary, language, 1500, threads)?;
        Ok(if full.text.is_empty() { first } else { full })
    }

    fn decode(
        &self,
        samples: &[f32],
        prompt: Option<&str>,
        vocabulary: &Vocabulary,
        language: &str,
        audio_ctx: usize,
        threads: usize,
    ) -> Result<Transcript, TranscribeError> {
        let seconds = samples.len().div_ceil(16_000);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads as i32);
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
        let steps = Steps { vocabulary: (!vocabulary.is_empty()).then_some(vocabulary), ..Steps::default() };
        logits_filter::install(&mut params, &steps);
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
        let mut tokens = Vec::new();
        let end_of_text = self.context.token_eot();
        for segment in state.as_iter() {
            let piece = segment.to_str_lossy().map_err(|e| TranscribeError::Inference(e.to_string()))?;
            text.push_str(&piece);
            tokens.extend(
                (0..segment.n_tokens())
                    .filter_map(|i| segment.get_token(i))
                    .map(|t| t.token_id())
                    .filter(|&id| id < end_of_text),
            );
        }
        drop(state);
        let changes = steps.changes.take();
        let free_text = vocabulary::free_tokens(&tokens, &changes).map(|free| {
            let bytes: Vec<u8> =
                free.iter().filter_map(|&t| self.context.token_to_bytes(t).ok()).flatten().copied().collect();
            remove_repeats(String::from_utf8_lossy(&bytes).trim())
        });
        let text = remove_repeats(text.trim());
        let free_text = free_text.filter(|free| *free != text);
        Ok(Transcript { text, audio_ctx, threads, free_text })
    }
}

/// Pieces of at most [`MAX_SAMPLES`]: a longer clip is cut at the quietest
/// 100 ms of each piece's last 10 s (between words, where there is a pause),
/// so nothing beyond whisper's window is dropped.
pub fn pieces(samples: &[f32]) -> Vec<&[f32]> {
    let mut pieces = Vec::new();
    let mut rest = samples;
    while rest.len() > MAX_SAMPLES {
        let search_from = MAX_SAMPLES - CUT_SEARCH_SAMPLES;
        let energy = |start: usize| rest[start..start + CUT_FRAME_SAMPLES].iter().map(|s| s * s).sum::<f32>();
        let cut = (search_from..=MAX_SAMPLES - CUT_FRAME_SAMPLES)
            .step_by(CUT_FRAME_SAMPLES / 4)
            .map(|start| (energy(start), start))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(MAX_SAMPLES, |(_, start)| start + CUT_FRAME_SAMPLES / 2);
        let (piece, after) = rest.split_at(cut);
        pieces.push(piece);
        rest = after;
    }
    pieces.push(rest);
    pieces
}

/// Whether a transcript is one phrase said twice and nothing else ("Calling
/// Calling", "15th 15th"): what the shortened context makes of some short
/// clips.
pub fn said_twice(text: &str) -> bool {
    let keys: Vec<String> = text.split_whitespace().map(word_key).filter(|k| !k.is_empty()).collect();
    let half = keys.len() / 2;
    half > 0 && keys.len().is_multiple_of(2) && keys[..half] == keys[half..]
}

/// A word as the repeat checks compare it: its letters and digits, lowercased.
fn word_key(word: &str) -> String {
    word.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase()
}

/// Cuts a decoding loop out of a transcript: when the words from some point
/// on repeat the words before them periodically ("turn off the lamp. turn
/// off the" → "turn off the lamp."), only the first period is kept; the
/// last word may be cut short. Words without letters or digits ("( ( (")
/// are dropped.
pub fn remove_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).collect();
    let keys: Vec<String> = words.iter().map(|w| word_key(w)).collect();
    let n = keys.len();
    let repeats_from = |period: usize| {
        (period..n).all(|i| {
            let (now, then) = (&keys[i], &keys[i - period]);
            now == then || (i == n - 1 && !now.is_empty() && then.starts_with(now.as_str()))
        })
    };
    let periodic = (1..n).find(|&period| n - period >= 2 && repeats_from(period));
    // A first sentence of three or more words that comes back verbatim, or without its
    // first word ("I turn off the light. Turn off the light."), starts a loop too.
    let first_sentence =
        words.iter().position(|w| w.ends_with(['.', '!', '?'])).map(|end| end + 1).filter(|&len| len >= 3);
    let restarted = first_sentence.and_then(|len| {
        (0..=1)
            .filter_map(|skip| {
                let body = &keys[skip..len];
                let last_start = (n + 1).checked_sub(body.len())?;
                (body.len() >= 3).then(|| (len..last_start).find(|&at| keys[at..at + body.len()] == *body)).flatten()
            })
            .min()
    });
    let cut = periodic.into_iter().chain(restarted).min().unwrap_or(n);
    words[..cut].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_said_twice_is_noticed() {
        assert!(said_twice("Calling Calling"));
        assert!(said_twice("15th 15th."));
        assert!(said_twice("Turn on the light. Turn on the light."));
        assert!(!said_twice("Calling"));
        assert!(!said_twice("turn on the light and the fan"));
        assert!(!said_twice(""));
    }

    #[test]
    fn a_long_clip_is_cut_in_a_pause_into_pieces_whisper_can_take() {
        // 70 s of "speech" (a tone) with pauses at 24.0–24.5 s and 50.0–50.3 s.
        let mut samples: Vec<f32> = (0..70 * 16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        for pause in [(24_000, 24_500), (50_000, 50_300)] {
            for sample in &mut samples[pause.0 * 16..pause.1 * 16] {
                *sample = 0.0;
            }
        }
        let pieces = pieces(&samples);
        let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(lengths.iter().sum::<usize>(), samples.len(), "nothing dropped");
        assert!(lengths.iter().all(|&l| l <= MAX_SAMPLES), "{lengths:?}");
        assert_eq!(lengths.len(), 3, "{lengths:?}");
        // Each cut is inside its pause.
        assert!((24_000 * 16..24_500 * 16).contains(&lengths[0]), "{lengths:?}");
        assert!((50_000 * 16..50_300 * 16).contains(&(lengths[0] + lengths[1])), "{lengths:?}");
        assert_eq!(super::pieces(&samples[..16_000]).len(), 1);
    }

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
        assert_eq!(
            remove_repeats("I turn off the porch light last night. Turn off the porch light last night."),
            "I turn off the porch light last night."
        );
        assert_eq!(
            remove_repeats("Turn off the light. Then turn off the fan."),
            "Turn off the light. Then turn off the fan."
        );
    }
}
