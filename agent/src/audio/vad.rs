//! Streaming voice-activity segmentation with WebRTC's VAD.
//!
//! Audio is pushed in arbitrary chunks; complete utterances come out as soon
//! as their trailing silence has passed. A segment starts when speech has
//! lasted `onset_ms` and includes `pre_roll_ms` of audio before that, so
//! the first syllable is never clipped. It ends after `end_silence_ms` of
//! non-speech (the samples keep a short tail of that silence), and is cut at
//! `max_utterance_ms`, so an endless stream of speech never buffers forever.
//! Segments with less than `min_speech_ms` of voiced audio (clicks, coughs)
//! are dropped.

use std::collections::VecDeque;

use webrtc_vad::{SampleRate, Vad, VadMode};

use crate::audio::SAMPLE_RATE;

/// Segmentation settings; the defaults suit short spoken commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadConfig {
    /// Frame length: 10, 20 or 30 ms (what WebRTC's VAD accepts).
    pub frame_ms: u32,
    /// 0 (least aggressive, keeps more as speech) to 3 (most aggressive).
    pub aggressiveness: u8,
    /// Voiced time needed to start a segment.
    pub onset_ms: u32,
    /// Audio kept before the onset.
    pub pre_roll_ms: u32,
    /// Non-speech that ends a segment.
    pub end_silence_ms: u32,
    /// Silence kept after the last voiced frame.
    pub tail_ms: u32,
    /// Segments with less voiced audio are dropped.
    pub min_speech_ms: u32,
    /// Longer segments are cut here.
    pub max_utterance_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            frame_ms: 20,
            aggressiveness: 2,
            onset_ms: 60,
            pre_roll_ms: 200,
            end_silence_ms: 400,
            tail_ms: 100,
            min_speech_ms: 150,
            max_utterance_ms: 10_000,
        }
    }
}

/// Invalid VAD settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VadError {
    /// A setting outside what WebRTC's VAD or the segmenter accepts.
    #[error("invalid VAD setting {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is allowed.
        reason: String,
    },
}

/// One detected utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start (pre-roll included), from the beginning of the stream.
    pub start_ms: u64,
    /// End of speech (the last voiced frame), from the beginning of the stream.
    pub end_ms: u64,
    /// The audio, 16 kHz mono, from `start_ms` to `end_ms` plus the tail.
    pub samples: Vec<f32>,
    /// Whether the segment was cut at `max_utterance_ms` rather than ended by silence.
    pub cut: bool,
}

enum State {
    Idle { onset_frames: u32 },
    Speaking { start_frame: u64, voiced_frames: u32, silent_frames: u32, last_voiced_frame: u64 },
}

/// The streaming segmenter. Not `Send` (WebRTC's VAD is a C object): create
/// it on the thread that runs it.
pub struct Segmenter {
    vad: Vad,
    config: VadConfig,
    frame_len: usize,
    pending: Vec<f32>,
    frames_seen: u64,
    history: VecDeque<Vec<f32>>,
    utterance: Vec<f32>,
    state: State,
}

impl Segmenter {
    /// Checks the settings and creates a segmenter.
    pub fn new(config: VadConfig) -> Result<Segmenter, VadError> {
        if ![10, 20, 30].contains(&config.frame_ms) {
            return Err(VadError::Config {
                field: "frame_ms",
                reason: format!("{} is not 10, 20 or 30", config.frame_ms),
            });
        }
        let mode = match config.aggressiveness {
            0 => VadMode::Quality,
            1 => VadMode::LowBitrate,
            2 => VadMode::Aggressive,
            3 => VadMode::VeryAggressive,
            other => return Err(VadError::Config { field: "aggressiveness", reason: format!("{other} is not 0–3") }),
        };
        if config.max_utterance_ms < config.frame_ms * 2 || config.end_silence_ms < config.frame_ms {
            return Err(VadError::Config {
                field: "max_utterance_ms/end_silence_ms",
                reason: "must span at least two frames / one frame".to_owned(),
            });
        }
        Ok(Segmenter {
            vad: Vad::new_with_rate_and_mode(SampleRate::Rate16kHz, mode),
            frame_len: (SAMPLE_RATE * config.frame_ms / 1000) as usize,
            config,
            pending: Vec::new(),
            frames_seen: 0,
            history: VecDeque::new(),
            utterance: Vec::new(),
            state: State::Idle { onset_frames: 0 },
        })
    }

    fn frames(&self, ms: u32) -> u32 {
        ms.div_ceil(self.config.frame_ms)
    }

    fn frame_to_ms(&self, frame: u64) -> u64 {
        frame * u64::from(self.config.frame_ms)
    }

    /// Feeds 16 kHz mono samples; returns the utterances completed by them.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Segment> {
        let mut done = Vec::new();
        self.pending.extend_from_slice(samples);
        let mut offset = 0;
        while self.pending.len() - offset >= self.frame_len {
            let frame = self.pending[offset..offset + self.frame_len].to_vec();
            offset += self.frame_len;
            if let Some(segment) = self.step(frame) {
                done.push(segment);
            }
        }
        self.pending.drain(..offset);
        done
    }

    /// Ends the stream: returns the utterance in progress, if it has enough speech.
    pub fn finish(&mut self) -> Option<Segment> {
        match self.state {
            State::Speaking { .. } => self.close(false),
            State::Idle { .. } => None,
        }
    }

    fn step(&mut self, frame: Vec<f32>) -> Option<Segment> {
        let pcm: Vec<i16> = frame.iter().map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16).collect();
        let voiced = self.vad.is_voice_segment(&pcm).unwrap_or(false);
        let index = self.frames_seen;
        self.frames_seen += 1;
        match &mut self.state {
            State::Idle { onset_frames } => {
                *onset_frames = if voiced { *onset_frames + 1 } else { 0 };
                let onset = *onset_frames;
                self.history.push_back(frame);
                let keep = (self.frames(self.config.pre_roll_ms) + self.frames(self.config.onset_ms)) as usize;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                if onset >= self.frames(self.config.onset_ms) {
                    let start_frame = index + 1 - self.history.len() as u64;
                    self.utterance = self.history.drain(..).flatten().collect();
                    self.state = State::Speaking {
                        start_frame,
                        voiced_frames: onset,
                        silent_frames: 0,
                        last_voiced_frame: index,
                    };
                }
                None
            }
            State::Speaking { start_frame, voiced_frames, silent_frames, last_voiced_frame } => {
                self.utterance.extend_from_slice(&frame);
                if voiced {
                    *voiced_frames += 1;
                    *silent_frames = 0;
                    *last_voiced_frame = index;
                } else {
                    *silent_frames += 1;
                }
                let length_ms = (index + 1 - *start_frame) * u64::from(self.config.frame_ms);
                let ended = *silent_frames >= self.config.end_silence_ms.div_ceil(self.config.frame_ms);
                if ended {
                    self.close(false)
                } else if length_ms >= u64::from(self.config.max_utterance_ms) {
                    let segment = self.close(true);
                    // Still speaking: the next segment starts right here, without pre-roll.
                    self.state = State::Speaking {
                        start_frame: index + 1,
                        voiced_frames: 0,
                        silent_frames: 0,
                        last_voiced_frame: index,
                    };
                    segment
                } else {
                    None
                }
            }
        }
    }

    fn close(&mut self, cut: bool) -> Option<Segment> {
        let State::Speaking { start_frame, voiced_frames, last_voiced_frame, .. } = self.state else { return None };
        self.state = State::Idle { onset_frames: 0 };
        let mut samples = std::mem::take(&mut self.utterance);
        let end_frame = if cut { self.frames_seen } else { last_voiced_frame + 1 };
        let tail_frames = if cut { 0 } else { u64::from(self.frames(self.config.tail_ms)) };
        let keep_frames = (end_frame + tail_frames).min(self.frames_seen) - start_frame;
        samples.truncate(keep_frames as usize * self.frame_len);
        if voiced_frames < self.frames(self.config.min_speech_ms) && !cut {
            return None;
        }
        Some(Segment { start_ms: self.frame_to_ms(start_frame), end_ms: self.frame_to_ms(end_frame), samples, cut })
    }
}

/// Segments a whole recording at once.
pub fn segment_all(samples: &[f32], config: VadConfig) -> Result<Vec<Segment>, VadError> {
    let mut segmenter = Segmenter::new(config)?;
    let mut segments = segmenter.push(samples);
    segments.extend(segmenter.finish());
    Ok(segments)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Voice-like test signal: a harmonic-rich buzz with a syllable rhythm.
    fn buzz(ms: u32) -> Vec<f32> {
        let n = (SAMPLE_RATE * ms / 1000) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let envelope = 0.6 + 0.4 * (t * 2.0 * std::f32::consts::PI * 4.0).sin().abs();
                let voice: f32 =
                    (1..=12).map(|h| ((h as f32) * 140.0 * std::f32::consts::TAU * t).sin() / h as f32).sum();
                0.25 * envelope * voice
            })
            .collect()
    }

    fn silence(ms: u32) -> Vec<f32> {
        vec![0.0; (SAMPLE_RATE * ms / 1000) as usize]
    }

    #[test]
    fn separates_utterances_at_pauses_with_pre_roll() {
        let mut audio = silence(500);
        audio.extend(buzz(800));
        audio.extend(silence(700));
        audio.extend(buzz(600));
        audio.extend(silence(600));
        let segments = segment_all(&audio, VadConfig::default()).unwrap();
        assert_eq!(segments.len(), 2, "{:?}", segments.iter().map(|s| (s.start_ms, s.end_ms)).collect::<Vec<_>>());
        assert!(segments[0].start_ms <= 500 && segments[0].start_ms >= 200, "{}", segments[0].start_ms);
        // WebRTC's VAD keeps reporting speech for a little while after it stops (hangover).
        assert!((1_260..=1_460).contains(&segments[0].end_ms), "{}", segments[0].end_ms);
        assert!(segments[1].start_ms <= 2_000 && segments[1].start_ms >= 1_700, "{}", segments[1].start_ms);
        assert!(!segments[0].cut);
    }

    #[test]
    fn endless_speech_is_cut_at_the_maximum() {
        let config = VadConfig { max_utterance_ms: 2_000, ..VadConfig::default() };
        let mut segmenter = Segmenter::new(config).unwrap();
        let mut segments = Vec::new();
        for _ in 0..7 {
            segments.extend(segmenter.push(&buzz(1_000)));
        }
        assert!(segments.len() >= 3, "{}", segments.len());
        assert!(segments.iter().all(|s| s.cut && s.samples.len() <= 2 * SAMPLE_RATE as usize + 8_000));
    }

    #[test]
    fn silence_and_clicks_give_nothing_and_bad_settings_are_refused() {
        assert!(segment_all(&silence(3_000), VadConfig::default()).unwrap().is_empty());
        let mut click = silence(500);
        click.extend(buzz(60));
        click.extend(silence(800));
        assert!(segment_all(&click, VadConfig::default()).unwrap().is_empty());
        assert!(Segmenter::new(VadConfig { frame_ms: 25, ..VadConfig::default() }).is_err());
        assert!(Segmenter::new(VadConfig { aggressiveness: 4, ..VadConfig::default() }).is_err());
    }
}
