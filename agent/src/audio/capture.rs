//! Microphone capture (cpal on ALSA), converted to 16 kHz mono.
//!
//! The audio callback runs on a real-time thread: it neither blocks nor
//! allocates. It downmixes each frame to mono and pushes it into a
//! fixed-capacity wait-free ring buffer (rtrb); samples that do not fit are
//! dropped and counted. A capture thread drains the ring, resamples to
//! 16 kHz and hands chunks on. When the device vanishes (the stream reports
//! an error), the capture thread reopens it with backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rubato::{FftFixedIn, Resampler};

use crate::audio::SAMPLE_RATE;

/// Errors of the capture stage.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No input device matches.
    #[error("no audio input device matches '{wanted}' (see `hearken devices audio`)")]
    NoDevice {
        /// The name or index asked for.
        wanted: String,
    },
    /// The audio system refused.
    #[error("audio input: {0}")]
    Backend(String),
}

/// One input device as `hearken devices audio` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputDevice {
    /// Position in the list (usable with `--device`).
    pub index: usize,
    /// ALSA name (usable with `--device`).
    pub name: String,
    /// Native sample rate of its default configuration.
    pub sample_rate: Option<u32>,
    /// Channels of its default configuration.
    pub channels: Option<u16>,
    /// Whether it is the system default input.
    pub default: bool,
}

/// Lists input devices.
pub fn list_input_devices() -> Result<Vec<InputDevice>, CaptureError> {
    let host = cpal::default_host();
    let default_name = host.default_input_device().and_then(|d| d.name().ok());
    let devices = host.input_devices().map_err(|e| CaptureError::Backend(e.to_string()))?;
    Ok(devices
        .enumerate()
        .map(|(index, device)| {
            let name = device.name().unwrap_or_else(|_| "<unnamed>".to_owned());
            let config = device.default_input_config().ok();
            InputDevice {
                index,
                default: default_name.as_deref() == Some(name.as_str()),
                sample_rate: config.as_ref().map(|c| c.sample_rate().0),
                channels: config.as_ref().map(cpal::SupportedStreamConfig::channels),
                name,
            }
        })
        .collect())
}

fn find_device(wanted: Option<&str>) -> Result<cpal::Device, CaptureError> {
    let host = cpal::default_host();
    let Some(wanted) = wanted else {
        return host.default_input_device().ok_or_else(|| CaptureError::NoDevice { wanted: "default".to_owned() });
    };
    let devices: Vec<cpal::Device> = host.input_devices().map_err(|e| CaptureError::Backend(e.to_string()))?.collect();
    let by_index = wanted.parse::<usize>().ok().and_then(|i| devices.get(i).cloned());
    by_index
        .or_else(|| devices.into_iter().find(|d| d.name().is_ok_and(|n| n == wanted)))
        .ok_or_else(|| CaptureError::NoDevice { wanted: wanted.to_owned() })
}

/// Counters of the capture stage.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Samples dropped because the ring buffer was full.
    pub dropped_samples: AtomicU64,
    /// Times the device was (re)opened.
    pub opens: AtomicU64,
}

/// Pushes one interleaved buffer into the ring as mono, dropping what does
/// not fit. Runs in the real-time callback: no allocation, no locks.
pub fn push_downmixed<T: Copy>(
    data: &[T],
    channels: usize,
    to_f32: impl Fn(T) -> f32,
    ring: &mut rtrb::Producer<f32>,
    dropped: &AtomicU64,
) {
    let channels = channels.max(1);
    let mut lost = 0u64;
    for frame in data.chunks_exact(channels) {
        let mono = frame.iter().map(|s| to_f32(*s)).sum::<f32>() / channels as f32;
        if ring.push(mono).is_err() {
            lost += 1;
        }
    }
    if lost > 0 {
        dropped.fetch_add(lost, Ordering::Relaxed);
    }
}

/// Where capture comes from and where it goes.
pub struct CaptureConfig {
    /// Device name or index; `None` for the default input.
    pub device: Option<String>,
    /// Ring buffer length (native-rate samples = `ring_ms` worth).
    pub ring_ms: u32,
}

/// Runs capture on the current thread until `stop` is set: opens the device,
/// forwards 16 kHz mono chunks to `sink`, and reopens with backoff when the
/// device fails. Returns when stopped or when `sink` is closed.
pub fn run(
    config: &CaptureConfig,
    sink: &std::sync::mpsc::SyncSender<Vec<f32>>,
    stats: &Arc<CaptureStats>,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        match capture_once(config, sink, stats, stop) {
            Ok(Finished::Stopped) => return Ok(()),
            Ok(Finished::DeviceLost(reason)) | Err(CaptureError::Backend(reason)) => {
                failures += 1;
                let delay = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
                tracing::warn!(%reason, ?delay, "audio input lost; reopening");
                std::thread::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum Finished {
    Stopped,
    DeviceLost(String),
}

fn capture_once(
    config: &CaptureConfig,
    sink: &std::sync::mpsc::SyncSender<Vec<f32>>,
    stats: &Arc<CaptureStats>,
    stop: &AtomicBool,
) -> Result<Finished, CaptureError> {
    let device = find_device(config.device.as_deref())?;
    let supported = device.default_input_config().map_err(|e| CaptureError::Backend(e.to_string()))?;
    let rate = supported.sample_rate().0;
    let channels = usize::from(supported.channels());
    let (producer, mut consumer) = rtrb::RingBuffer::<f32>::new((rate * config.ring_ms / 1000).max(1024) as usize);
    let failed = Arc::new(AtomicBool::new(false));
    let stream_config: cpal::StreamConfig = supported.config();
    let on_error = {
        let failed = failed.clone();
        move |e: cpal::StreamError| {
            tracing::warn!("audio stream error: {e}");
            failed.store(true, Ordering::Relaxed);
        }
    };
    let stream =
        build_stream(&device, &stream_config, supported.sample_format(), channels, producer, stats.clone(), on_error)?;
    stream.play().map_err(|e| CaptureError::Backend(e.to_string()))?;
    stats.opens.fetch_add(1, Ordering::Relaxed);
    let chunk = 1024;
    let mut resampler = (rate != SAMPLE_RATE)
        .then(|| FftFixedIn::<f32>::new(rate as usize, SAMPLE_RATE as usize, chunk, 2, 1))
        .transpose()
        .map_err(|e| CaptureError::Backend(e.to_string()))?;
    let mut pending = Vec::with_capacity(chunk * 2);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Finished::Stopped);
        }
        if failed.load(Ordering::Relaxed) {
            return Ok(Finished::DeviceLost("the stream reported an error".to_owned()));
        }
        while let Ok(sample) = consumer.pop() {
            pending.push(sample);
        }
        while pending.len() >= chunk {
            let block: Vec<f32> = pending.drain(..chunk).collect();
            let out = match &mut resampler {
                Some(r) => r.process(&[block], None).map_err(|e| CaptureError::Backend(e.to_string()))?.remove(0),
                None => block,
            };
            if sink.send(out).is_err() {
                return Ok(Finished::Stopped);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn build_stream(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    format: cpal::SampleFormat,
    channels: usize,
    mut ring: rtrb::Producer<f32>,
    stats: Arc<CaptureStats>,
    on_error: impl FnMut(cpal::StreamError) + Send + 'static,
) -> Result<cpal::Stream, CaptureError> {
    let result = match format {
        cpal::SampleFormat::F32 => device.build_input_stream(
            config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                push_downmixed(data, channels, |s| s, &mut ring, &stats.dropped_samples)
            },
            on_error,
            None,
        ),
        cpal::SampleFormat::I16 => device.build_input_stream(
            config,
            move |data: &[i16], _: &cpal::InputCallbackInfo| {
                push_downmixed(data, channels, |s| f32::from(s) / 32768.0, &mut ring, &stats.dropped_samples)
            },
            on_error,
            None,
        ),
        cpal::SampleFormat::I32 => device.build_input_stream(
            config,
            move |data: &[i32], _: &cpal::InputCallbackInfo| {
                push_downmixed(data, channels, |s| s as f32 / 2_147_483_648.0, &mut ring, &stats.dropped_samples)
            },
            on_error,
            None,
        ),
        cpal::SampleFormat::U16 => device.build_input_stream(
            config,
            move |data: &[u16], _: &cpal::InputCallbackInfo| {
                push_downmixed(
                    data,
                    channels,
                    |s| (f32::from(s) - 32768.0) / 32768.0,
                    &mut ring,
                    &stats.dropped_samples,
                )
            },
            on_error,
            None,
        ),
        other => return Err(CaptureError::Backend(format!("sample format {other:?} is not supported"))),
    };
    result.map_err(|e| CaptureError::Backend(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn callback_downmixes_and_counts_what_does_not_fit() {
        let (mut producer, mut consumer) = rtrb::RingBuffer::<f32>::new(3);
        let dropped = AtomicU64::new(0);
        let stereo: [i16; 10] = [16384, 16384, -16384, 0, 0, 0, 100, 100, 5, 5];
        push_downmixed(&stereo, 2, |s| f32::from(s) / 32768.0, &mut producer, &dropped);
        assert_eq!(consumer.pop().unwrap(), 0.5);
        assert_eq!(consumer.pop().unwrap(), -0.25);
        assert_eq!(consumer.pop().unwrap(), 0.0);
        assert!(consumer.pop().is_err());
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn listing_devices_never_panics_even_without_a_sound_card() {
        // CI machines have no microphone: listing must still answer (possibly empty).
        let _ = list_input_devices();
        assert!(matches!(
            find_device(Some("no such device 12345")),
            Err(CaptureError::NoDevice { .. }) | Err(CaptureError::Backend(_))
        ));
    }
}
