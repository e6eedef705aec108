//! `hearken process`: the daemon's pipeline offline (VAD → STT → intent, no
//! MQTT) over WAV files, one JSON line per detected utterance.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use hearken::audio::{self, vad};
use hearken::intent::Interpreter;
use hearken::local::WhisperProcess;
use hearken::millis;
use hearken::stt::{self, hear_until_complete};

/// Arguments of `hearken process`.
#[derive(Args)]
pub(crate) struct ProcessArgs {
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    /// ggml whisper model (default: the cached tiny.en).
    #[arg(long)]
    stt_model: Option<PathBuf>,
    #[command(flatten)]
    engine: crate::interpret::EngineArgs,
    /// Transcribe an utterance whose reading misses something again, primed with the
    /// catalog (the daemon's `stt.retry_with_catalog_prompt = true`; off by default).
    #[arg(long)]
    second_hearing: bool,
    /// Do not favour the catalog's names while decoding (the daemon's
    /// `stt.vocabulary_from_catalog = false`), to measure what favouring them does.
    #[arg(long)]
    no_vocabulary: bool,
    /// Trailing silence that ends an utterance.
    #[arg(long, default_value_t = 400)]
    end_silence_ms: u32,
    /// WAV files (8–48 kHz, any common sample format, any channel count).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Prints `{"file","start_ms","end_ms","text"[,"transcripts"],"commands","needs_confirmation","latency_ms":{"vad","stt","nlu","total"}}`
/// per utterance (`transcripts`: every reading when further, primed
/// transcriptions were made), or `{"file","error"}`; exits 1 if any file or
/// utterance failed.
pub(crate) async fn process(args: ProcessArgs) -> anyhow::Result<ExitCode> {
    let catalog = match crate::common::load_catalog(&args.catalog) {
        Ok(catalog) => catalog,
        Err(code) => return Ok(code),
    };
    let vad_config = vad::VadConfig { end_silence_ms: args.end_silence_ms, ..vad::VadConfig::default() };
    vad::Segmenter::new(vad_config)?;
    let threads = args.engine.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let whisper = WhisperProcess::start(&crate::common::default_model(args.stt_model.clone())?, threads).await?;
    let stt_client = whisper.client(Duration::from_secs(30))?;
    let (_llama, chat) = args.engine.connect().await?;
    let retry_prompts = if args.second_hearing { stt::prompts(&catalog) } else { Vec::new() };
    let vocabulary = if args.no_vocabulary { Vec::new() } else { stt::catalog_vocabulary(&catalog) };
    let priming = stt::Priming { prompt: None, vocabulary: &vocabulary };
    let interpreter = Interpreter::new(catalog, chat, args.engine.config());
    interpreter.warm_up().await?;
    let mut failed = false;
    for file in &args.files {
        let decoded = match audio::read_wav(file) {
            Ok(decoded) => decoded,
            Err(e) => {
                failed = true;
                println!("{}", json!({"file": file, "error": e.to_string()}));
                continue;
            }
        };
        let started = Instant::now();
        let segments = vad::segment_all(&decoded.samples, vad_config)?;
        // The VAD's compute time, shared out over the file's utterances.
        let vad_ms = millis(started.elapsed()) / segments.len().max(1) as f64;
        for segment in segments {
            let started = Instant::now();
            let line = match stt_client.transcribe(&segment.samples, priming).await {
                Err(e) => Err(e.to_string()),
                Ok(transcript) => match interpreter.interpret(&transcript.text).await {
                    Err(e) => Err(e.to_string()),
                    Ok(result) => {
                        // The free reading, when favouring the catalog changed a word (the daemon's rule).
                        let free = match &transcript.free_text {
                            Some(free_text) => interpreter.interpret(free_text).await.ok(),
                            None => None,
                        };
                        let free_latency = free.as_ref().map_or(Duration::ZERO, |f| f.latency);
                        let result = stt::free_reading::choose(result, free);
                        let mut line = json!({"file": file, "start_ms": segment.start_ms, "end_ms": segment.end_ms,
                                              "text": transcript.text});
                        if let Some(free_text) = &transcript.free_text {
                            line["free_text"] = json!(free_text);
                        }
                        let (mut stt_latency, mut nlu_latency) = (transcript.latency, result.latency + free_latency);
                        let request_of = |text: &str| Some(text.to_owned());
                        let first = (transcript.text.clone(), result);
                        let again = hear_until_complete(
                            &stt_client,
                            &interpreter,
                            &segment.samples,
                            &retry_prompts,
                            &transcript.text,
                            first,
                            request_of,
                        )
                        .await;
                        stt_latency += again.stt_latency;
                        nlu_latency += again.nlu_latency;
                        if again.transcripts.len() > 1 {
                            line["transcripts"] = json!(again.transcripts);
                            line["text"] = json!(again.text);
                        }
                        let result = again.interpretation;
                        line["commands"] = json!(result.commands);
                        line["needs_confirmation"] = json!(result.needs_confirmation);
                        if let Some(reason) = result.no_command_reason {
                            line["no_command_reason"] = json!(reason);
                            line["explanation"] = json!(result.explanation);
                        }
                        line["latency_ms"] = json!({"vad": vad_ms, "stt": millis(stt_latency), "nlu": millis(nlu_latency),
                                                    "total": vad_ms + millis(started.elapsed())});
                        Ok(line)
                    }
                },
            };
            let line = line.unwrap_or_else(|error| {
                failed = true;
                json!({"file": file, "start_ms": segment.start_ms, "end_ms": segment.end_ms, "error": error})
            });
            println!("{line}");
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
