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

use super::metrics::Metrics;
use super::DaemonError;
use crate::config::{AudioConfig, AudioSource};
use crate::{audio, capture, vad};

/// One utterance as the VAD cut it.
pub struct Heard {
    /// Sequential id, for the tracing span, the report and the audit record.
    pub id: u64,
    /// The audio and where it lies in the stream.
    pub segment: vad::Segment,
    /// When the segmenter emitted it: end of speech plus the trailing silence.
    pub at: Instant,
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
    utterances: mpsc::Sender<Heard>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::thread::JoinHandle<Result<(), DaemonError>> {
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
        let next_id = AtomicU64::new(1);
        let deliver = |segment: vad::Segment| -> bool {
            let heard = Heard { id: next_id.fetch_add(1, Ordering::Relaxed), segment, at: Instant::now() };
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
            return reader.join().map_err(|_| DaemonError::Source("the audio reader panicked".to_owned()))?;
        }
        Ok(())
    })
}

fn read_input(
    config: &AudioConfig,
    sink: &std::sync::mpsc::SyncSender<Vec<f32>>,
    stop: &AtomicBool,
    capture_stats: &Arc<capture::CaptureStats>,
) -> Result<(), DaemonError> {
    match config.source {
        AudioSource::Microphone => {
            let device = Some(config.device.clone()).filter(|d| !d.is_empty());
            capture::run(&capture::CaptureConfig { device, ring_ms: 2_000 }, sink, capture_stats, stop)?;
            Ok(())
        }
        AudioSource::File => {
            let path = config.file.as_deref().ok_or_else(|| DaemonError::Source("no audio.file".to_owned()))?;
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
                let n = stdin.read(&mut buffer).map_err(|e| DaemonError::Source(format!("stdin: {e}")))?;
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
