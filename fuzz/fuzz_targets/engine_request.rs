//! Request bodies the engines accept: the chat request of `hearken-llama`
//! (first byte even) and the multipart transcription form of
//! `hearken-whisper` (first byte odd; boundary `B`), through the very
//! parsers the engines use, with their default limits.
#![no_main]

use hearken_engine_api::request::{parse_chat, parse_transcription, CHAT_MAX_TOKENS, TRANSCRIPTION_MAX_AUDIO_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    if which % 2 == 0 {
        if let Ok(job) = parse_chat(body, CHAT_MAX_TOKENS) {
            assert!(job.max_tokens >= 1 && job.max_tokens <= CHAT_MAX_TOKENS);
            assert!(!job.messages.is_empty());
        }
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let body = bytes::Bytes::copy_from_slice(body);
        let parsed = runtime.block_on(parse_transcription("multipart/form-data; boundary=B", body, TRANSCRIPTION_MAX_AUDIO_MS));
        if let Ok(job) = parsed {
            assert!(job.audio.duration_ms() <= TRANSCRIPTION_MAX_AUDIO_MS);
        }
    }
});
