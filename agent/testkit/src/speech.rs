//! Test speech in natural voices: Kokoro-82M (28 English styles), the Piper
//! voice joe, and espeak-ng, optionally in a real room with noise at a given
//! SNR. `scripts/speech/fetch.sh` fetches the pinned voices into the cache
//! (outside the clone) and `scripts/speech/say.py` speaks; each clip is
//! cached by what it says and how, so a set is synthesized once per machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One clip to speak.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// What is said.
    pub text: String,
    /// `kokoro:<style>`, `piper:joe` or `espeak:<voice>`.
    pub voice: String,
    /// A room's impulse response (a file name in the cache's `impulses/`, without `.wav`).
    pub room: Option<String>,
    /// Pink noise this many dB below the speech.
    pub snr_db: Option<f64>,
}

impl Utterance {
    /// `text` in `voice`, dry and quiet.
    pub fn new(text: &str, voice: &str) -> Utterance {
        Utterance { text: text.to_owned(), voice: voice.to_owned(), room: None, snr_db: None }
    }

    /// The same in `room` with noise at `snr_db`.
    pub fn in_room(mut self, room: &str, snr_db: f64) -> Utterance {
        self.room = Some(room.to_owned());
        self.snr_db = Some(snr_db);
        self
    }

    /// A short label for reports: `kokoro:af_heart`, `piper:joe+Concrete Room@10dB`.
    pub fn variant(&self) -> String {
        match (&self.room, self.snr_db) {
            (Some(room), Some(snr)) => format!("{}+{room}@{snr}dB", self.voice),
            _ => self.voice.clone(),
        }
    }

    fn job(&self) -> Value {
        json!({"text": self.text, "voice": self.voice, "room": self.room, "snr_db": self.snr_db})
    }
}

/// The voices of the natural sets: two US and two UK Kokoro styles (female
/// and male), Piper's joe, and espeak-ng as one voice among them.
pub const VOICES: [&str; 6] =
    ["kokoro:af_heart", "kokoro:am_michael", "kokoro:bf_emma", "kokoro:bm_george", "piper:joe", "espeak:en-us"];

/// The room of the noisy variant (a real concrete room's response).
pub const ROOM: &str = "Concrete Room";

/// The repository's `scripts/speech` directory.
fn scripts() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/speech");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("scripts/speech")
    }
}

/// Fetches the voices if needed and returns the speech cache directory.
pub fn cache() -> anyhow::Result<PathBuf> {
    let out = Command::new(scripts().join("fetch.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run scripts/speech/fetch.sh")?;
    if !out.status.success() {
        bail!("scripts/speech/fetch.sh failed ({})", out.status);
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Speaks every utterance (those not cached yet in one run of the
/// synthesizer) and returns their 16 kHz WAVs, in order.
pub fn say(utterances: &[Utterance]) -> anyhow::Result<Vec<PathBuf>> {
    let cache = cache()?;
    let clips = cache.join("clips");
    std::fs::create_dir_all(&clips)?;
    let script = std::fs::read(scripts().join("say.py")).context("cannot read scripts/speech/say.py")?;
    let paths: Vec<PathBuf> = utterances
        .iter()
        .map(|u| {
            let mut key = Sha256::new();
            key.update(&script);
            key.update(u.job().to_string());
            clips.join(format!("{}.wav", &hex::encode(key.finalize())[..24]))
        })
        .collect();
    // Each missing clip once, though a set may say the same thing twice.
    let mut seen = std::collections::HashSet::new();
    let missing: Vec<(usize, &PathBuf)> =
        paths.iter().enumerate().filter(|(_, p)| !p.exists() && seen.insert(*p)).collect();
    if missing.is_empty() {
        return Ok(paths);
    }
    // One synthesizer per core, each speaking every n-th missing clip.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(missing.len());
    let shares: Vec<Vec<(usize, &PathBuf)>> =
        (0..workers).map(|w| missing.iter().skip(w).step_by(workers).copied().collect()).collect();
    let mut children = Vec::new();
    for share in &shares {
        let mut child = Command::new(cache.join("venv/bin/python"))
            .arg(scripts().join("say.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the speech venv's python (scripts/speech/fetch.sh)")?;
        let mut jobs = String::new();
        for (i, path) in share {
            let mut job = utterances[*i].job();
            // Written beside, then renamed: an interrupted run leaves no half clip in the cache.
            job["out"] = json!(format!("{}.part.wav", path.display()));
            jobs.push_str(&format!("{job}\n"));
        }
        // Fed from a thread, so that neither pipe fills while the other waits.
        let mut stdin = child.stdin.take().context("no stdin")?;
        std::thread::spawn(move || stdin.write_all(jobs.as_bytes()));
        children.push(child);
    }
    for (share, child) in shares.iter().zip(children) {
        let out = child.wait_with_output()?;
        let results: Vec<Value> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        for ((i, path), result) in share.iter().zip(&results) {
            if let Some(error) = result["error"].as_str() {
                bail!("cannot speak {:?} as {}: {error}", utterances[*i].text, utterances[*i].voice);
            }
            std::fs::rename(format!("{}.part.wav", path.display()), path)?;
        }
        if results.len() != share.len() {
            bail!("the synthesizer spoke {} of {} clips ({})", results.len(), share.len(), out.status);
        }
    }
    Ok(paths)
}
