//! Audio input: WAV files (any common format, resampled properly), raw
//! 16 kHz s16le PCM, and the 16 kHz mono WAV hearken sends to speech engines.
//!
//! Everything downstream (VAD, speech-to-text) works on 16 kHz mono `f32`
//! samples in `-1.0..=1.0`.

use std::io::Cursor;
use std::path::Path;

use rubato::{FftFixedIn, Resampler};

/// The sample rate of everything after input.
pub const SAMPLE_RATE: u32 = 16_000;

/// Lowest and highest input rates accepted.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=48_000;

/// Errors of the audio input stage.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not a WAV file (or a WAV hound cannot parse).
    #[error("{what}: not a WAV file: {reason}")]
    NotWav {
        /// What was being read.
        what: String,
        /// Why it is not a WAV.
        reason: String,
    },
    /// The data chunk ends before its declared length.
    #[error("{what}: truncated WAV: {got} of {expected} samples present")]
    Truncated {
        /// What was being read.
        what: String,
        /// Samples read.
        got: u64,
        /// Samples declared.
        expected: u64,
    },
    /// No samples at all.
    #[error("{what}: the audio is empty")]
    Empty {
        /// What was being read.
        what: String,
    },
    /// A rate outside 8–48 kHz.
    #[error("{what}: sample rate {rate} Hz is outside 8000–48000 Hz")]
    UnsupportedRate {
        /// What was being read.
        what: String,
        /// The rate found.
        rate: u32,
    },
    /// A sample format hearken does not read.
    #[error("{what}: unsupported sample format: {format}")]
    UnsupportedFormat {
        /// What was being read.
        what: String,
        /// The format found.
        format: String,
    },
    /// A float sample that is NaN or infinite (found by fuzzing: it made the resampler panic).
    #[error("{what}: float sample {index} is not a finite number")]
    NotFinite {
        /// What was being read.
        what: String,
        /// Its position among the interleaved samples.
        index: usize,
    },
    /// Raw PCM with an odd number of bytes.
    #[error("{what}: raw s16le PCM must have an even number of bytes, got {bytes}")]
    OddPcm {
        /// What was being read.
        what: String,
        /// Byte count.
        bytes: usize,
    },
    /// The resampler failed.
    #[error("resampling {from} Hz to {to} Hz failed: {reason}")]
    Resample {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// Why.
        reason: String,
    },
}

/// Decoded audio, already converted to 16 kHz mono.
#[derive(Debug, Clone)]
pub struct Audio {
    /// 16 kHz mono samples in `-1.0..=1.0`.
    pub samples: Vec<f32>,
    /// The input's sample rate.
    pub source_rate: u32,
    /// The input's channel count.
    pub source_channels: u16,
}

impl Audio {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE)
    }
}

/// Reads and converts a WAV file.
pub fn read_wav(path: &Path) -> Result<Audio, AudioError> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io { path: what.clone(), source })?;
    decode_wav(&bytes, &what)
}

/// Decodes WAV bytes (8/16/24/32-bit integer PCM or 32-bit float, any channel
/// count, 8–48 kHz) and converts to 16 kHz mono. `what` names the input in errors.
pub fn decode_wav(bytes: &[u8], what: &str) -> Result<Audio, AudioError> {
    let reader = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| AudioError::NotWav { what: what.to_owned(), reason: e.to_string() })?;
    let spec = reader.spec();
    if !RATE_RANGE.contains(&spec.sample_rate) {
        return Err(AudioError::UnsupportedRate { what: what.to_owned(), rate: spec.sample_rate });
    }
    if spec.channels == 0 {
        return Err(AudioError::UnsupportedFormat { what: what.to_owned(), format: "zero channels".to_owned() });
    }
    let expected = u64::from(reader.len());
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            let samples = collect(reader, what, expected, |s: f32| s)?;
            if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
                return Err(AudioError::NotFinite { what: what.to_owned(), index });
            }
            // Past full scale is clipping, not a louder signal.
            samples.into_iter().map(|s| s.clamp(-1.0, 1.0)).collect()
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            collect(reader, what, expected, |s: i32| s as f32 * scale)?
        }
        (format, bits) => {
            return Err(AudioError::UnsupportedFormat {
                what: what.to_owned(),
                format: format!("{format:?} {bits}-bit"),
            })
        }
    };
    let channels = usize::from(spec.channels);
    let mono: Vec<f32> =
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    if mono.is_empty() {
        return Err(AudioError::Empty { what: what.to_owned() });
    }
    let samples = resample(&mono, spec.sample_rate, SAMPLE_RATE)?;
    Ok(Audio { samples, source_rate: spec.sample_rate, source_channels: spec.channels })
}

fn collect<S: hound::Sample>(
    reader: hound::WavReader<Cursor<&[u8]>>,
    what: &str,
    expected: u64,
    convert: impl Fn(S) -> f32,
) -> Result<Vec<f32>, AudioError> {
    let mut out = Vec::with_capacity(expected as usize);
    for sample in reader.into_samples::<S>() {
        match sample {
            Ok(s) => out.push(convert(s)),
            Err(hound::Error::IoError(_)) => {
                return Err(AudioError::Truncated { what: what.to_owned(), got: out.len() as u64, expected })
            }
            Err(e) => return Err(AudioError::NotWav { what: what.to_owned(), reason: e.to_string() }),
        }
    }
    Ok(out)
}

/// Converts raw 16 kHz mono s16le PCM (as from `arecord -f S16_LE -r 16000`) to samples.
pub fn decode_pcm_s16le(bytes: &[u8], what: &str) -> Result<Vec<f32>, AudioError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(AudioError::OddPcm { what: what.to_owned(), bytes: bytes.len() });
    }
    if bytes.is_empty() {
        return Err(AudioError::Empty { what: what.to_owned() });
    }
    Ok(bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect())
}

/// Band-limited resampling (FFT-based, rubato); identity when the rates match.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let error = |e: &dyn std::fmt::Display| AudioError::Resample { from, to, reason: e.to_string() };
    // The FFT resampler panics on NaN or infinity rather than failing.
    if let Some(index) = samples.iter().position(|s| !s.is_finite()) {
        return Err(error(&format!("sample {index} is not a finite number")));
    }
    let chunk = 1024;
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1).map_err(|e| error(&e))?;
    let expected = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(expected + delay + chunk);
    let mut position = 0;
    while samples.len() - position >= resampler.input_frames_next() {
        let need = resampler.input_frames_next();
        let produced = resampler.process(&[&samples[position..position + need]], None).map_err(|e| error(&e))?;
        out.extend_from_slice(&produced[0]);
        position += need;
    }
    if position < samples.len() {
        let produced = resampler.process_partial(Some(&[&samples[position..]]), None).map_err(|e| error(&e))?;
        out.extend_from_slice(&produced[0]);
    }
    while out.len() < expected + delay {
        let produced = resampler.process_partial::<&[f32]>(None, None).map_err(|e| error(&e))?;
        if produced[0].is_empty() {
            break;
        }
        out.extend_from_slice(&produced[0]);
    }
    let mut out = out.split_off(delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

/// Encodes 16 kHz mono samples as a 16-bit PCM WAV, the form hearken sends to
/// speech engines (compact, and every OpenAI-compatible server reads it).
pub fn encode_wav16k(samples: &[f32]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (i as f32 * hz * std::f32::consts::TAU / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Power of `hz` in `samples` by correlation (a one-bin DFT).
    fn tone_power(samples: &[f32], rate: u32, hz: f32) -> f32 {
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for (i, s) in samples.iter().enumerate() {
            let phase = i as f32 * hz * std::f32::consts::TAU / rate as f32;
            re += s * phase.cos();
            im += s * phase.sin();
        }
        (re * re + im * im).sqrt() / samples.len() as f32
    }

    #[test]
    fn resampling_keeps_length_and_tone_and_removes_aliases() {
        let input = sine(48_000, 1_000.0, 1.0);
        let out = resample(&input, 48_000, SAMPLE_RATE).unwrap();
        assert_eq!(out.len(), 16_000);
        assert!((tone_power(&out, SAMPLE_RATE, 1_000.0) - 0.25).abs() < 0.02);
        // 11 kHz cannot exist at 16 kHz: a proper resampler removes it rather
        // than folding it to 5 kHz as sample dropping would.
        let high = resample(&sine(48_000, 11_000.0, 1.0), 48_000, SAMPLE_RATE).unwrap();
        assert!(
            tone_power(&high, SAMPLE_RATE, 5_000.0) < 0.01,
            "aliasing: {}",
            tone_power(&high, SAMPLE_RATE, 5_000.0)
        );
        let up = resample(&sine(8_000, 440.0, 0.5), 8_000, SAMPLE_RATE).unwrap();
        assert_eq!(up.len(), 8_000);
    }

    #[test]
    fn wav_round_trip_and_bad_input() {
        let samples = sine(SAMPLE_RATE, 300.0, 0.25);
        let wav = encode_wav16k(&samples);
        let decoded = decode_wav(&wav, "mem").unwrap();
        assert_eq!(decoded.samples.len(), samples.len());
        assert!(decoded.samples.iter().zip(&samples).all(|(a, b)| (a - b).abs() < 1e-3));
        assert!(matches!(decode_wav(b"hello world", "mem"), Err(AudioError::NotWav { .. })));
        assert!(matches!(decode_wav(&wav[..wav.len() / 2], "mem"), Err(AudioError::Truncated { .. })));
        assert!(matches!(decode_wav(&encode_wav16k(&[]), "mem"), Err(AudioError::Empty { .. })));
        assert!(matches!(decode_pcm_s16le(&[1, 2, 3], "stdin"), Err(AudioError::OddPcm { .. })));
        assert_eq!(decode_pcm_s16le(&[0, 0x40], "stdin").unwrap(), vec![0.5]);
    }

    /// A 32-bit float WAV at 22,050 Hz (so it is resampled).
    fn float_wav(samples: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut out = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in samples {
            writer.write_sample(*s).unwrap();
        }
        writer.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn float_samples_that_are_not_finite_are_refused_not_a_panic() {
        // What the wav fuzz target found: a NaN made the FFT resampler panic.
        let crash = include_bytes!("../../../../fuzz/seeds/wav/regression_nan_float.wav");
        assert!(matches!(decode_wav(crash, "mem"), Err(AudioError::NotFinite { .. })));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut samples = sine(22_050, 300.0, 0.1);
            samples[100] = bad;
            let error = decode_wav(&float_wav(&samples), "clip.wav").unwrap_err();
            assert_eq!(error.to_string(), "clip.wav: float sample 100 is not a finite number");
            assert!(resample(&samples, 22_050, SAMPLE_RATE).is_err());
        }
        // Past full scale is clipped (the resampler rings a little around the step).
        let loud = decode_wav(&float_wav(&[4.0; 2_205]), "mem").unwrap();
        assert!(loud.samples.iter().all(|s| s.abs() < 1.2), "{:?}", &loud.samples[..4]);
    }
}
