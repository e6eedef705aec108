//! `hearken bench hearing`: a text dev set (`tests/data/understanding_dev.jsonl`
//! and sets like it: catalog, area, text, commands, half) spoken in natural
//! voices and in a noisy room, run through `hearken process` as a user would,
//! and scored per variant: exact command sets, false actions (a command
//! nobody asked for), and the STT latency median, p95 and their ratio (one
//! pass is the norm, so p95 / median shows how often an utterance was heard
//! more than once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use crate::eval::{load_set, percentile, DevCase};
use crate::speech::{say, Utterance, ROOM};

/// Arguments of `hearken bench hearing`.
#[derive(Args)]
pub struct BenchHearingArgs {
    /// Text dev set (JSON lines: catalog, text, commands, optional area and half);
    /// catalog paths are relative to the current directory.
    #[arg(long, default_value = "tests/data/understanding_dev.jsonl")]
    set: PathBuf,
    /// Score only this half (`tune`, `held`).
    #[arg(long)]
    half: Option<String>,
    /// At most this many sentences, spread evenly over the set (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Voices, one variant each (`kokoro:<style>`, `piper:joe`, `espeak:<voice>`).
    #[arg(long = "voice", default_values = ["kokoro:af_heart", "kokoro:am_michael", "kokoro:bf_emma", "piper:joe"])]
    voices: Vec<String>,
    /// Also a noisy-room variant of every sentence (`Concrete Room`, pink noise this
    /// many dB below the speech), each sentence in the next of the voices in turn.
    #[arg(long)]
    room_snr_db: Option<f64>,
    /// Print every utterance, not only the wrong and missed ones.
    #[arg(long)]
    all_cases: bool,
    /// Arguments passed on to `hearken process` (e.g. `--process-arg=--second-hearing`,
    /// `--process-arg=--stt-model=PATH`).
    #[arg(long = "process-arg", allow_hyphen_values = true)]
    process_args: Vec<String>,
}

/// One command as scored: device, action, value.
type Scored = BTreeSet<(String, String, Option<String>)>;

fn scored(commands: &[Value]) -> Scored {
    commands
        .iter()
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&c["device"]), text(&c["action"]), c.get("value").filter(|v| !v.is_null()).map(Value::to_string))
        })
        .collect()
}

/// One clip to hear: its sentence, its variant label and its WAV.
struct Clip<'a> {
    case: &'a DevCase,
    variant: String,
    wav: PathBuf,
}

/// Speaks the set, runs `hearken process` once per catalog and area, and
/// prints one JSON report per variant, then one pooled over the dry voices.
pub async fn bench_hearing(args: BenchHearingArgs) -> anyhow::Result<ExitCode> {
    let mut cases = load_set(&args.set)?;
    if let Some(half) = &args.half {
        cases.retain(|c| c.half.as_deref().is_none_or(|h| h == half));
    }
    if args.limit > 0 && cases.len() > args.limit {
        let step = cases.len() as f64 / args.limit as f64;
        cases = (0..args.limit).map(|i| cases[(i as f64 * step) as usize].clone()).collect();
    }
    if cases.is_empty() || args.voices.is_empty() {
        bail!("nothing to hear: no sentences or no voices");
    }
    let mut utterances = Vec::new();
    let mut labels = Vec::new();
    for voice in &args.voices {
        for case in &cases {
            utterances.push(Utterance::new(&case.text, voice));
            labels.push(voice.clone());
        }
    }
    if let Some(snr) = args.room_snr_db {
        for (i, case) in cases.iter().enumerate() {
            let voice = &args.voices[i % args.voices.len()];
            utterances.push(Utterance::new(&case.text, voice).in_room(ROOM, snr));
            labels.push(format!("room@{snr}dB"));
        }
    }
    eprintln!("speaking {} clips (cached after the first run)…", utterances.len());
    let wavs = say(&utterances)?;
    let clips: Vec<Clip> = utterances
        .iter()
        .zip(labels)
        .zip(wavs)
        .enumerate()
        .map(|(i, ((_, variant), wav))| Clip { case: &cases[i % cases.len()], variant, wav })
        .collect();

    // One `hearken process` per catalog and area, over every clip of that pair.
    let mut groups: BTreeMap<(PathBuf, Option<String>), Vec<&Clip>> = BTreeMap::new();
    for clip in &clips {
        groups.entry((clip.case.catalog.clone(), clip.case.area.clone())).or_default().push(clip);
    }
    // By catalog, area and file: the same words in the same voice are one clip, heard once per catalog.
    let mut lines_of: BTreeMap<(PathBuf, Option<String>, String), Vec<Value>> = BTreeMap::new();
    for ((catalog, area), group) in &groups {
        eprintln!("hearing {} clips for {}{}", group.len(), catalog.display(), area.as_deref().unwrap_or(""));
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("process").arg("--catalog").arg(catalog);
        if let Some(area) = area {
            command.arg("--area").arg(area);
        }
        let wavs: BTreeSet<&PathBuf> = group.iter().map(|c| &c.wav).collect();
        command.args(&args.process_args).args(wavs);
        let out =
            command.stderr(std::process::Stdio::inherit()).output().await.context("cannot run hearken process")?;
        if !out.status.success() && out.stdout.is_empty() {
            bail!("hearken process failed for {} ({}); see its message above", catalog.display(), out.status);
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let value: Value = serde_json::from_str(line).with_context(|| format!("hearken process printed {line}"))?;
            let file = value["file"].as_str().unwrap_or_default().to_owned();
            lines_of.entry((catalog.clone(), area.clone(), file)).or_default().push(value);
        }
    }

    let mut reports: BTreeMap<String, Tally> = BTreeMap::new();
    for clip in &clips {
        let key = (clip.case.catalog.clone(), clip.case.area.clone(), clip.wav.display().to_string());
        let heard = lines_of.get(&key).cloned().unwrap_or_default();
        reports.entry(clip.variant.clone()).or_default().add(clip, &heard, args.all_cases);
    }
    let mut pooled = Tally::default();
    for (variant, tally) in &reports {
        println!("{}", tally.report(variant));
        if !variant.starts_with("room@") {
            pooled.merge(tally);
        }
    }
    println!("{}", pooled.report("dry voices pooled"));
    Ok(ExitCode::SUCCESS)
}

/// What one variant's clips gave.
#[derive(Default)]
struct Tally {
    clips: usize,
    exact: usize,
    missed: usize,
    false_actions: usize,
    errors: usize,
    /// Transcriptions made, over all utterances.
    transcriptions: usize,
    utterances: usize,
    stt_ms: Vec<f64>,
    cases: Vec<Value>,
}

impl Tally {
    fn add(&mut self, clip: &Clip, heard: &[Value], all_cases: bool) {
        let expected: Scored = clip
            .case
            .commands
            .iter()
            .map(|c| (c.device.clone(), c.action.clone(), c.value.map(|v| v.to_string())))
            .collect();
        let mut got = Scored::new();
        let mut error = None;
        for line in heard {
            if let Some(e) = line["error"].as_str() {
                error = Some(e.to_owned());
            }
            got.extend(scored(line["commands"].as_array().map_or(&[][..], Vec::as_slice)));
            self.utterances += 1;
            self.transcriptions += line["transcripts"].as_array().map_or(1, Vec::len);
            if let Some(ms) = line["latency_ms"]["stt"].as_f64() {
                self.stt_ms.push(ms);
            }
        }
        self.clips += 1;
        let outcome = if error.is_some() {
            self.errors += 1;
            "error"
        } else if got == expected {
            self.exact += 1;
            "exact"
        } else if got.is_subset(&expected) {
            self.missed += 1;
            "missed"
        } else {
            self.false_actions += 1;
            "false action"
        };
        if all_cases || outcome != "exact" {
            let texts: Vec<&Value> = heard.iter().map(|l| &l["text"]).collect();
            self.cases.push(json!({"outcome": outcome, "said": clip.case.text, "heard": texts,
                                   "got": got, "expected": expected, "error": error, "half": clip.case.half}));
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.clips += other.clips;
        self.exact += other.exact;
        self.missed += other.missed;
        self.false_actions += other.false_actions;
        self.errors += other.errors;
        self.transcriptions += other.transcriptions;
        self.utterances += other.utterances;
        self.stt_ms.extend(&other.stt_ms);
    }

    fn report(&self, variant: &str) -> Value {
        let mut stt = self.stt_ms.clone();
        stt.sort_by(f64::total_cmp);
        let (median, p95) = (percentile(&stt, 0.5), percentile(&stt, 0.95));
        json!({
            "variant": variant,
            "clips": self.clips,
            "exact": self.exact,
            "exact_share": self.exact as f64 / self.clips.max(1) as f64,
            "missed": self.missed,
            "false_actions": self.false_actions,
            "errors": self.errors,
            "transcriptions_per_utterance": self.transcriptions as f64 / self.utterances.max(1) as f64,
            "stt_ms": {"median": median, "p95": p95, "p95_over_median": if median > 0.0 { p95 / median } else { 0.0 }},
            "cases": self.cases,
        })
    }
}
