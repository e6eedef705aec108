//! What whisper.cpp's logits filter does before every decoder step: it
//! stops a decoding loop as it starts, and it favours the site's vocabulary
//! ([`crate::vocabulary`]).
//!
//! Loops: with the context sized to the clip, and more so with an initial
//! prompt, whisper tiny.en sometimes repeats itself ("close the shades,
//! closer the shades, closer the shades, …") until the token cap: the text
//! is cleaned afterwards ([`crate::transcriber::remove_repeats`]), but every
//! looped token costs a decoder pass (a 1.5 s clip that loops took 0.4 s
//! instead of 0.15 s). Once the text ends in a verbatim repeat, end-of-text
//! is left as the only choice.
//!
//! This is the engine's only unsafe code: whisper.cpp takes the filter as a C
//! function pointer and hands it raw pointers.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::os::raw::{c_int, c_void};

use crate::vocabulary::{Change, Vocabulary};
use whisper_rs::whisper_rs_sys::{
    whisper_context, whisper_n_vocab, whisper_state, whisper_token_beg, whisper_token_data, whisper_token_eot,
};

/// Whether `tokens` (text tokens, timestamps left out) end in a verbatim
/// repeat: the last `p` tokens equal the `p` before them for some `p ≥ 2`,
/// or one token comes three times in a row ("light light light"; a word said
/// twice, "no no", is speech).
pub fn ends_in_repeat(tokens: &[i32]) -> bool {
    let n = tokens.len();
    if n >= 3 && tokens[n - 1] == tokens[n - 2] && tokens[n - 2] == tokens[n - 3] {
        return true;
    }
    (2..=n / 2).any(|p| tokens[n - p..] == tokens[n - 2 * p..n - p])
}

/// What the filter knows during one decoding: the vocabulary to favour and
/// the changes its boosts made.
#[derive(Default)]
pub struct Steps<'a> {
    /// Phrases to favour (none: only loops are stopped).
    pub vocabulary: Option<&'a Vocabulary>,
    /// Steps where a boost changed the best text token.
    pub changes: RefCell<Vec<Change>>,
}

/// whisper.cpp's logits filter (`whisper_full_params.logits_filter_callback`):
/// once the text decoded so far ends in a repeat, every token but
/// end-of-text is made impossible; otherwise the vocabulary's tokens are
/// boosted.
///
/// # Safety
///
/// Called by whisper.cpp only, with its context, `n_tokens` token records,
/// a row of `whisper_n_vocab(ctx)` logits (`whisper_process_logits`) and
/// the user data [`install`] set: a [`Steps`] that outlives the decoding.
pub unsafe extern "C" fn filter_step(
    ctx: *mut whisper_context,
    _state: *mut whisper_state,
    tokens: *const whisper_token_data,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    let Ok(n_tokens) = usize::try_from(n_tokens) else { return };
    if ctx.is_null() || logits.is_null() || (tokens.is_null() && n_tokens > 0) {
        return;
    }
    // SAFETY: whisper.cpp passes `n_tokens` initialized token records that
    // live for the duration of the call.
    let tokens = if n_tokens == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(tokens, n_tokens) } };
    // SAFETY: `ctx` is whisper.cpp's live context.
    let (first_timestamp, end_of_text, n_vocab) =
        unsafe { (whisper_token_beg(ctx), whisper_token_eot(ctx), whisper_n_vocab(ctx)) };
    let Ok(n_vocab) = usize::try_from(n_vocab) else { return };
    // SAFETY: the logits row holds one entry per vocabulary token and nothing
    // else reads or writes it during the call.
    let logits = unsafe { std::slice::from_raw_parts_mut(logits, n_vocab) };
    let text: Vec<i32> = tokens.iter().map(|t| t.id).filter(|&id| id < first_timestamp).collect();
    if ends_in_repeat(&text) {
        for (id, logit) in logits.iter_mut().enumerate() {
            if usize::try_from(end_of_text).ok() != Some(id) {
                *logit = f32::NEG_INFINITY;
            }
        }
        return;
    }
    // SAFETY: `install` set the user data to a `Steps` borrowed for the
    // whole decoding; whisper.cpp calls the filter from one thread at a time.
    let Some(steps) = (unsafe { user_data.cast::<Steps>().as_ref() }) else { return };
    let Some(vocabulary) = steps.vocabulary else { return };
    let text_end = usize::try_from(first_timestamp).unwrap_or(n_vocab);
    if let Some(change) = vocabulary.apply(&text, logits, text_end) {
        steps.changes.borrow_mut().push(change);
    }
}

/// Installs the filter on one transcription's parameters; `steps` must
/// outlive the decoding that uses them.
pub fn install<'a>(params: &mut whisper_rs::FullParams<'_, '_>, steps: &'a Steps<'a>) {
    // SAFETY: the filter only reads `steps` (and pushes to its RefCell)
    // during `whisper_full`, which the caller runs while `steps` is borrowed,
    // and touches only what whisper.cpp hands it for the duration of the call.
    unsafe {
        params.set_filter_logits_callback(Some(filter_step));
        params.set_filter_logits_callback_user_data(std::ptr::from_ref(steps).cast_mut().cast());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_of_two_or_more_tokens_end_the_text_single_words_need_three() {
        assert!(ends_in_repeat(&[5, 1, 2, 1, 2]));
        assert!(ends_in_repeat(&[7, 8, 9, 7, 8, 9]));
        assert!(ends_in_repeat(&[4, 4, 4]));
        assert!(!ends_in_repeat(&[4, 4]), "a word said twice is speech");
        assert!(!ends_in_repeat(&[1, 2, 3, 1, 2]), "not yet a full repeat");
        assert!(!ends_in_repeat(&[1, 2, 3, 4]));
        assert!(!ends_in_repeat(&[]));
        assert!(!ends_in_repeat(&[1]));
    }
}
