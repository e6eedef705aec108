//! WAV bytes as a client or a file might send them: decoded (any rate,
//! format and channel count the parser takes) to 16 kHz mono, and the
//! resampler on its own with a rate taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(audio) = hearken::audio::decode_wav(data, "fuzz") {
        assert!(audio.samples.iter().all(|s| s.is_finite()), "decoded samples must be finite");
    }
    if data.len() >= 2 {
        // Any rate the decoder accepts (8–48 kHz), the samples from the rest.
        let from = 8_000 + u32::from(u16::from_le_bytes([data[0], data[1]])) % 40_001;
        let samples: Vec<f32> =
            data[2..].chunks_exact(2).take(4_000).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect();
        if let Ok(out) = hearken::audio::resample(&samples, from, 16_000) {
            assert!(out.iter().all(|s| s.is_finite()));
        }
    }
});
