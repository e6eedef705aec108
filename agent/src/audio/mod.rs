//! Input → utterances: WAV files and raw PCM (the codec shared with the
//! engines), the microphone, the VAD segmenter, and the source task that
//! turns any of them into utterances on a bounded channel.
//!
//! - [`capture`]: microphone capture (cpal); the audio callback never blocks
//!   nor allocates, frames cross a fixed-capacity lock-free queue, what does
//!   not fit is dropped and counted.
//! - [`vad`]: streaming voice-activity segmentation (WebRTC VAD) with pre-roll,
//!   trailing silence and a length cap.
//! - `source`: the audio thread of the daemon and `hearken listen`
//!   (microphone, file, stdin, or text lines).

pub mod capture;
pub(crate) mod source;
pub mod vad;

pub use hearken_engine_api::wav::*;
pub use source::{spawn as spawn_source, vad_config, Heard, Input, SourceError, UtteranceIds};
