//! Scoring the interpreter on a dev set (`tests/data/nlu_dev*.jsonl`): one
//! JSON object per line with the catalog, the kind of utterance, the text and
//! the expected commands. A case is right when the set of (device, action,
//! value) is exactly the expected one. Used by `hearken bench nlu` and by
//! the accuracy test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hearken::intent::{ChatClient, Interpreter, InterpreterConfig};

use hearken::catalog::{Catalog, Command};

/// Errors while reading a dev set.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The set or a catalog it names cannot be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One utterance with its expected commands.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DevCase {
    /// Catalog path, relative to the set's repository root.
    pub catalog: PathBuf,
    /// paraphrase, numbers, multi, non_command, asr.
    pub kind: String,
    /// What the interpreter gets.
    pub text: String,
    /// What was said, when `text` is a recognizer's transcript of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoken: Option<String>,
    /// Expected commands (empty for non-commands).
    pub commands: Vec<Command>,
    /// The speaker's room, when the sentence relies on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Why there is no command, when none is expected and the reason matters
    /// (`no_such_device`, `unsupported_action`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `tune` (looked at while developing) or `held` (scored only at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half: Option<String>,
}

/// Reads a JSON-lines dev set.
pub fn load_set(path: &Path) -> Result<Vec<DevCase>, EvalError> {
    let read_error = |reason: String| EvalError::Read { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).map_err(|e| read_error(format!("line {}: {e}", n + 1))))
        .collect()
}

/// One case's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case.
    pub case: DevCase,
    /// What the interpreter produced (empty on error).
    pub got: Vec<Command>,
    /// Whether `got` equals the expected set.
    pub correct: bool,
    /// The interpreter's reason for giving no command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_command_reason: Option<String>,
    /// The interpreter's error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Interpretation latency in milliseconds.
    pub latency_ms: f64,
    /// Whether the model was asked.
    pub asked_model: bool,
    /// Tokens the model generated, and how many of them the grammar forced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<(u64, u64)>,
}

/// Accuracy and latency over a set.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Cases.
    pub cases: usize,
    /// Exactly right.
    pub correct: usize,
    /// correct / cases.
    pub accuracy: f64,
    /// (correct, cases) per kind.
    pub by_kind: BTreeMap<String, (usize, usize)>,
    /// (correct, cases) per half (`tune`, `held`; `-` for sets without halves).
    pub by_half: BTreeMap<String, (usize, usize)>,
    /// Cases that expect a reason and got exactly it, of those that expect one.
    pub reasons: (usize, usize),
    /// Non-command cases that produced a command (the bar is zero).
    pub false_commands: usize,
    /// Cases that ended in an error.
    pub errors: usize,
    /// Cases where the model was asked.
    pub model_calls: usize,
    /// Median interpretation latency (all cases), ms.
    pub median_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Median over the cases that asked the model, ms.
    pub model_median_ms: f64,
    /// 95th percentile over the cases that asked the model, ms.
    pub model_p95_ms: f64,
    /// Tokens the model generated over all calls.
    pub generated_tokens: u64,
    /// Of those, forced by the grammar (jump-forward).
    pub forced_tokens: u64,
    /// Every case, for inspection.
    pub results: Vec<CaseResult>,
}

fn same_commands(a: &[Command], b: &[Command]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.contains(c)) && b.iter().all(|c| a.contains(c))
}

/// The value at quantile `p` (0..=1) of sorted samples, nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs every case through an interpreter for its catalog (catalog paths
/// are resolved against `root`) and scores it. Each catalog's prompt is
/// sent once, untimed, before its first case, as a running daemon has it
/// cached; cases should be grouped by catalog.
pub async fn evaluate(
    cases: &[DevCase],
    root: &Path,
    client: &ChatClient,
    config: &InterpreterConfig,
) -> Result<EvalReport, EvalError> {
    let mut interpreters: BTreeMap<PathBuf, Interpreter> = BTreeMap::new();
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        if !interpreters.contains_key(&case.catalog) {
            let path = root.join(&case.catalog);
            let catalog = Catalog::load(&path)
                .map_err(|e| EvalError::Read { path: path.display().to_string(), reason: e.to_string() })?;
            let interpreter = Interpreter::new(catalog, client.clone(), config.clone());
            // Untimed: the catalog prompt is decoded once per site, not per utterance.
            let _ = interpreter.warm_up().await;
            interpreters.insert(case.catalog.clone(), interpreter);
        }
        let Some(interpreter) = interpreters.get(&case.catalog) else { continue };
        let started = std::time::Instant::now();
        let outcome = interpreter.interpret_planned(&interpreter.plan_in(&case.text, case.area.as_deref())).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (got, error, asked_model, tokens, reason) = match outcome {
            Ok(interpretation) => {
                let tokens = interpretation
                    .model
                    .as_ref()
                    .map(|m| (m.completion_tokens.unwrap_or(0), m.forced_tokens.unwrap_or(0)));
                let reason = interpretation.no_command_reason.map(|r| r.as_str().to_owned());
                (interpretation.commands, None, interpretation.asked_model, tokens, reason)
            }
            Err(e) => (Vec::new(), Some(e.to_string()), true, None, None),
        };
        // A refusal is right when it refuses; an error is a refusal too when none was expected.
        let correct = (error.is_none() || case.commands.is_empty()) && same_commands(&got, &case.commands);
        results.push(CaseResult {
            case: case.clone(),
            got,
            correct,
            no_command_reason: reason,
            error,
            latency_ms,
            asked_model,
            tokens,
        });
    }
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for result in &results {
        let entry = by_kind.entry(result.case.kind.clone()).or_default();
        entry.0 += usize::from(result.correct);
        entry.1 += 1;
    }
    let mut by_half: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for result in &results {
        let entry = by_half.entry(result.case.half.clone().unwrap_or_else(|| "-".to_owned())).or_default();
        entry.0 += usize::from(result.correct);
        entry.1 += 1;
    }
    let expecting: Vec<&CaseResult> = results.iter().filter(|r| r.case.reason.is_some()).collect();
    let reasons = (
        expecting.iter().filter(|r| r.no_command_reason.is_some() && r.no_command_reason == r.case.reason).count(),
        expecting.len(),
    );
    let mut latencies: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut model_latencies: Vec<f64> = results.iter().filter(|r| r.asked_model).map(|r| r.latency_ms).collect();
    model_latencies.sort_by(f64::total_cmp);
    let correct = results.iter().filter(|r| r.correct).count();
    Ok(EvalReport {
        cases: results.len(),
        correct,
        accuracy: if results.is_empty() { 0.0 } else { correct as f64 / results.len() as f64 },
        by_kind,
        by_half,
        reasons,
        false_commands: results.iter().filter(|r| r.case.commands.is_empty() && !r.got.is_empty()).count(),
        errors: results.iter().filter(|r| r.error.is_some()).count(),
        model_calls: results.iter().filter(|r| r.asked_model).count(),
        median_ms: percentile(&latencies, 0.5),
        p95_ms: percentile(&latencies, 0.95),
        model_median_ms: percentile(&model_latencies, 0.5),
        model_p95_ms: percentile(&model_latencies, 0.95),
        generated_tokens: results.iter().filter_map(|r| r.tokens).map(|t| t.0).sum(),
        forced_tokens: results.iter().filter_map(|r| r.tokens).map(|t| t.1).sum(),
        results,
    })
}
