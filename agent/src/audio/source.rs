//! The audio source stage: microphone, WAV file or stdin → VAD segmenter →
//! utterances on a bounded channel. Runs on its own OS thread (the VAD is a
//! C object and audio never waits for the runtime). Live audio cannot wait:
//! when the queue to the engines is full a new utterance is dropped and
//! counted. A file that is not paced at real time waits instead (backpressure).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::audio::{self, capture, vad};
use crate::config::{AudioConfig, AudioSource};
use crate::daemon::metrics::Metrics;

/// Errors of the audio source: the input cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input itself failed (no file configured, stdin unreadable, a reader thread panicked).
    #[error("audio input: {0}")]
    Input(String),
    /// The audio file or stream cannot be decoded.
    #[error(transparent)]
    Audio(#[from] audio::AudioError),
    /// The microphone failed.
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    /// The VAD settings are invalid.
    #[error(transparent)]
    Vad(#[from] vad::VadError),
}

/// One utterance: speech as the VAD cut it, a line of the text source, or a
/// text message.
pub struct Heard {
    /// Sequential id, for the tracing span, the report and the audit record.
    pub id: u64,
    /// What was heard.
    pub input: Input,
    /// When it was emitted: end of speech plus the trailing silence, or when the line was read.
    pub at: Instant,
    /// The speaker's room when the input says (a text message's `area`);
    /// `None`: the daemon's `[audio] area`.
    pub area: Option<String>,
}

/// Utterance ids shared by every input of one daemon, so that speech and
/// text messages never share an id.
#[derive(Clone, Debug)]
pub struct UtteranceIds(Arc<AtomicU64>);

impl Default for UtteranceIds {
    fn default() -> UtteranceIds {
        UtteranceIds(Arc::new(AtomicU64::new(1)))
    }
}

impl UtteranceIds {
    /// The next id.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// What an utterance is made of.
pub enum Input {
    /// The audio and where it lies in the stream.
    Speech(vad::Segment),
    /// A text message on `hearken/<site>/text`: already addressed to hearken
    /// (no wake phrase), answered with a `text_reply` event.
    Message {
        /// The request.
        text: String,
        /// The sender's id for the request, echoed in the reply.
        request_id: Option<String>,
    },
    /// A request as text (`audio.source = "text"`).
    Text {
        /// 1-based line number in the input.
        line: u64,
        /// The line, at most `limits.max_request_chars` + 1 characters: the rest of a
        /// longer line is never held in memory, and the worker refuses it.
        text: String,
    },
}

/// How often the segmenter looks at the stop flag while no audio arrives.
const STOP_POLL: Duration = Duration::from_millis(50);

/// 20 ms of 16 kHz audio: the chunk size fed to the segmenter.
const CHUNK: usize = 320;

/// The VAD settings of an audio config.
pub fn vad_config(config: &AudioConfig) -> vad::VadConfig {
    vad::VadConfig {
        end_silence_ms: config.end_silence_ms,
        aggressiveness: config.aggressiveness,
        max_utterance_ms: config.max_utterance_ms,
        ..vad::VadConfig::default()
    }
}

/// Starts the source thread. It ends when the input ends, when `stop` is
/// set, or when the receiver is gone.
pub fn spawn(
    config: AudioConfig,
    ids: UtteranceIds,
    utterances: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::thread::JoinHandle<Result<(), SourceError>> {
    std::thread::spawn(move || {
        let (chunks_tx, chunks_rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(64);
        let reader = {
            let config = config.clone();
            let stop = stop.clone();
            let capture_stats = metrics.capture.clone();
            std::thread::spawn(move || read_input(&config, &chunks_tx, &stop, &capture_stats))
        };
        let live = config.source == AudioSource::Microphone || config.realtime;
        let mut segmenter = vad::Segmenter::new(vad_config(&config))?;
        let deliver = |segment: vad::Segment| -> bool {
            let input = Input::Speech(segment);
            let heard = Heard { id: ids.next(), input, at: Instant::now(), area: None };
            if live {
                match utterances.try_send(heard) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(heard)) => {
                        metrics.dropped_utterances.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(utterance = heard.id, "engines busy: utterance dropped");
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            } else {
                utterances.blocking_send(heard).is_ok()
            }
        };
        // Checks `stop` between chunks: a reader blocked on stdin cannot hold shutdown up.
        'feed: while !stop.load(Ordering::Relaxed) {
            let chunk = match chunks_rx.recv_timeout(STOP_POLL) {
                Ok(chunk) => chunk,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            for segment in segmenter.push(&chunk) {
                if !deliver(segment) {
                    break 'feed;
                }
            }
        }
        // Speech still open at the end (or at shutdown) is delivered as heard so far.
        if let Some(segment) = segmenter.finish() {
            deliver(segment);
        }
        stop.store(true, Ordering::Relaxed);
        if reader.is_finished() {
            return reader.join().map_err(|_| SourceError::Input("the audio reader panicked".to_owned()))?;
        }
        Ok(())
    })
}

fn read_input(
    config: &AudioConfig,
    sink: &std::sync::mpsc::SyncSender<Vec<f32>>,
    stop: &AtomicBool,
    capture_stats: &Arc<capture::CaptureStats>,
) -> Result<(), SourceError> {
    match config.source {
        // Lines of text are read by `spawn_text`, never as audio.
        AudioSource::Text => Err(SourceError::Input("source = \"text\" is not audio".to_owned())),
        AudioSource::Microphone => {
            let device = Some(config.device.clone()).filter(|d| !d.is_empty());
            capture::run(&capture::CaptureConfig { device, ring_ms: 2_000 }, sink, capture_stats, stop)?;
            Ok(())
        }
        AudioSource::File => {
            let path = config.file.as_deref().ok_or_else(|| SourceError::Input("no audio.file".to_owned()))?;
            let decoded = audio::read_wav(path)?;
            let started = Instant::now();
            for (i, chunk) in decoded.samples.chunks(CHUNK).enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if config.realtime {
                    let due = started + Duration::from_millis(i as u64 * 20);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                if sink.send(chunk.to_vec()).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }
        AudioSource::Stdin => {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; CHUNK * 2];
            loop {
                let n = stdin.read(&mut buffer).map_err(|e| SourceError::Input(format!("stdin: {e}")))?;
                if n == 0 || stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let even = n - n % 2;
                if sink.send(audio::decode_pcm_s16le(&buffer[..even], "stdin")?).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Starts the text source (`audio.source = "text"`): one request per line
/// from `audio.file`, or standard input when no file is set. Lines wait for
/// the worker (backpressure) rather than being dropped; blank lines are
/// skipped. It ends at the end of the input or when `stop` is set.
pub fn spawn_text(
    config: AudioConfig,
    ids: UtteranceIds,
    max_chars: usize,
    utterances: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), SourceError>> {
    std::thread::spawn(move || {
        let (lines_tx, lines_rx) = std::sync::mpsc::sync_channel::<(u64, String)>(16);
        let reader = std::thread::spawn(move || -> Result<(), SourceError> {
            let input: Box<dyn Read + Send> =
                match &config.file {
                    Some(path) => Box::new(std::fs::File::open(path).map_err(|e| {
                        SourceError::Input(format!("{}: cannot read the text input: {e}", path.display()))
                    })?),
                    None => Box::new(std::io::stdin()),
                };
            let mut input = std::io::BufReader::new(input);
            let mut number = 0;
            while let Some(line) = read_capped_line(&mut input, max_chars + 1)
                .map_err(|e| SourceError::Input(format!("text input: {e}")))?
            {
                number += 1;
                if !line.trim().is_empty() && lines_tx.send((number, line)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        while !stop.load(Ordering::Relaxed) {
            let (line, text) = match lines_rx.recv_timeout(STOP_POLL) {
                Ok(line) => line,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let heard = Heard { id: ids.next(), input: Input::Text { line, text }, at: Instant::now(), area: None };
            if utterances.blocking_send(heard).is_err() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        if reader.is_finished() {
            return reader.join().map_err(|_| SourceError::Input("the text reader panicked".to_owned()))?;
        }
        Ok(())
    })
}

/// The next line without its line ending, holding at most `max_chars`
/// characters of it (the rest is read and thrown away); `None` at the end.
/// Bytes that are not UTF-8 become U+FFFD.
pub fn read_capped_line(input: &mut impl std::io::BufRead, max_chars: usize) -> std::io::Result<Option<String>> {
    // A character is at most 4 bytes: keep that many, cut at a character boundary below.
    let max_bytes = max_chars.saturating_mul(4);
    let mut kept = Vec::new();
    let mut any = false;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        any = true;
        let (chunk, end) = match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => (&buffer[..i], Some(i + 1)),
            None => (buffer, None),
        };
        let room = max_bytes.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = end.unwrap_or(buffer.len());
        input.consume(consumed);
        if end.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&kept);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    Ok(Some(text.chars().take(max_chars).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_are_held_only_up_to_the_cap_and_the_rest_is_skipped() {
        let long = "é".repeat(10_000);
        let text = format!("turn on the fan\r\n{long}\nnext\n\nlast without newline");
        let mut input = std::io::BufReader::with_capacity(7, text.as_bytes());
        let mut lines = Vec::new();
        while let Some(line) = read_capped_line(&mut input, 6).unwrap() {
            lines.push(line);
        }
        assert_eq!(lines, ["turn o", "éééééé", "next", "", "last w"]);
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let mut input = std::io::BufReader::new(&b"on\xff\n"[..]);
        assert_eq!(read_capped_line(&mut input, 10).unwrap().unwrap(), "on\u{fffd}");
        assert_eq!(read_capped_line(&mut input, 10).unwrap(), None);
    }
}
