//! Slaney-normalised mel filter bank, as whisper's `mel_filters.npz` holds
//! (librosa `filters.mel(sr=16000, n_fft=400, n_mels=80)`: Slaney mel scale,
//! area normalisation). whisper.cpp reads the filters from the model file, so
//! a converted model must carry them.

/// Sample rate whisper expects.
pub const SAMPLE_RATE: f64 = 16_000.0;
/// FFT size of whisper's STFT.
pub const N_FFT: usize = 400;

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// `n_mels × (N_FFT/2 + 1)` filter weights, row-major.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins).map(|i| i as f64 * SAMPLE_RATE / N_FFT as f64).collect();
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let mel_points: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(low + (high - low) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut weights = Vec::with_capacity(n_mels * bins);
    for m in 0..n_mels {
        let (left, center, right) = (mel_points[m], mel_points[m + 1], mel_points[m + 2]);
        let norm = 2.0 / (right - left);
        for &f in &fft_freqs {
            let lower = (f - left) / (center - left);
            let upper = (right - f) / (right - center);
            weights.push((lower.min(upper).max(0.0) * norm) as f32);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whispers_own_mel_filters() {
        // Reference values read from openai-whisper's assets/mel_filters.npz (mel_80).
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-6;
        assert!(close(f[1], 0.024_862_594_902_515_41), "{}", f[1]);
        assert!(close(f[2], 0.0), "{}", f[2]);
        assert!(close(f[10 * 201 + 10], 0.019_908_217_713_236_81), "{}", f[10 * 201 + 10]);
        assert!(close(f[40 * 201 + 43], 0.014_735_566_452_145_576), "{}", f[40 * 201 + 43]);
        assert!(close(f[79 * 201 + 192], 0.003_164_711_873_978_376_4), "{}", f[79 * 201 + 192]);
        let sum: f64 = f.iter().map(|w| f64::from(*w)).sum();
        assert!((sum - 1.999_024_092_387_117).abs() < 1e-4, "{sum}");
    }
}
