//! `hearken interpret` and `hearken bench nlu`: the intent stage on text.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use hearken::intent::{ChatClient, Interpreter, InterpreterConfig};
use hearken::local::LlamaProcess;
use hearken::millis;
use hearken::models;

/// Where the intent model runs: a running server, or a local engine started for the run.
#[derive(Args)]
pub(crate) struct EngineArgs {
    /// Base URL of a running OpenAI-compatible chat server (e.g. http://127.0.0.1:8082); by
    /// default hearken-llama is started for the run.
    #[arg(long)]
    llm_url: Option<String>,
    /// File holding that server's bearer token (or set HEARKEN_LLM_TOKEN).
    #[arg(long)]
    llm_token_file: Option<PathBuf>,
    /// Model name sent to a --llm-url server.
    #[arg(long, default_value = "local")]
    llm_model: String,
    /// GGUF model for the local engine (default: the cached SmolLM2-135M-Instruct from
    /// `hearken models fetch`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads of the local engine (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Request timeout per utterance.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// The speaker's room: where "the light" is when the words name no place.
    #[arg(long)]
    area: Option<String>,
    /// Do not constrain the model's reply with the schema (diagnostics only: shows what
    /// the catalog validation refuses).
    #[arg(long)]
    no_schema: bool,
    /// Ask the model for every command instead of letting plain words settle plain
    /// actions first (to measure the model alone).
    #[arg(long)]
    model_only: bool,
}

impl EngineArgs {
    /// Starts the local engine (kept alive by the returned handle) or connects to --llm-url.
    pub(crate) async fn connect(&self) -> anyhow::Result<(Option<LlamaProcess>, ChatClient)> {
        let timeout = Duration::from_millis(self.timeout_ms);
        if let Some(url) = &self.llm_url {
            let token = crate::common::server_token(self.llm_token_file.as_deref(), "HEARKEN_LLM_TOKEN")?;
            return Ok((None, ChatClient::new(url, token, &self.llm_model, timeout)?));
        }
        let model = match &self.model {
            Some(model) => model.clone(),
            None => {
                let cached = models::smollm2_135m_path(&models::cache_dir());
                if !cached.exists() {
                    bail!("no intent model at {}; run `hearken models fetch` or pass --model", cached.display());
                }
                cached
            }
        };
        let threads = self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let engine = LlamaProcess::start(&model, threads).await?;
        let client = engine.client(timeout)?;
        Ok((Some(engine), client))
    }

    /// The interpreter settings these flags ask for.
    pub(crate) fn config(&self) -> InterpreterConfig {
        InterpreterConfig {
            constrain: !self.no_schema,
            settle_by_words: !self.model_only,
            area: self.area.clone(),
            ..InterpreterConfig::default()
        }
    }
}

/// Arguments of `hearken interpret`.
#[derive(Args)]
pub(crate) struct InterpretArgs {
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// Utterances; `-` reads one utterance per line from stdin.
    #[arg(required = true)]
    texts: Vec<String>,
}

/// Prints one JSON line per utterance; exits 1 if any could not be interpreted.
pub(crate) async fn interpret(args: InterpretArgs) -> anyhow::Result<ExitCode> {
    let catalog = match crate::common::load_catalog(&args.catalog) {
        Ok(catalog) => catalog,
        Err(code) => return Ok(code),
    };
    let (_engine, client) = args.engine.connect().await?;
    let interpreter = Interpreter::new(catalog, client, args.engine.config());
    let mut texts = Vec::new();
    for text in args.texts {
        if text == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.context("cannot read stdin")?;
                if !line.trim().is_empty() {
                    texts.push(line);
                }
            }
        } else {
            texts.push(text);
        }
    }
    let mut failed = false;
    for text in texts {
        let line = match interpreter.interpret(&text).await {
            Ok(result) => {
                let mut line = json!({
                    "text": result.text,
                    "commands": result.commands,
                    "needs_confirmation": result.needs_confirmation,
                    "latency_ms": {"nlu": millis(result.latency)},
                });
                if let Some(reason) = result.no_command_reason {
                    line["no_command_reason"] = json!(reason);
                    line["explanation"] = json!(result.explanation);
                }
                line
            }
            Err(e) => {
                failed = true;
                json!({"text": text, "error": e.to_string()})
            }
        };
        println!("{line}");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
