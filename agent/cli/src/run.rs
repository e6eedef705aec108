//! `hearken run` (the daemon) and `hearken config check|default`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use tokio::sync::mpsc;

use hearken::config::{Config, DEFAULT_CONFIG};

/// `hearken run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The configuration file (see `hearken config default`).
    #[arg(long)]
    config: PathBuf,
}

/// `hearken config …`.
#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check a configuration file and the catalog it names; exits 2 naming the field on any error.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the default configuration, every field documented.
    Default,
}

/// Exit status for an invalid config (as for invalid catalogs).
const EXIT_INVALID: u8 = 2;

/// Runs the daemon until SIGINT/SIGTERM (or the end of a file source),
/// printing one JSON line per utterance and per confirmation decision.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let (reports_tx, mut reports_rx) = mpsc::channel(64);
    let printer = tokio::spawn(async move {
        while let Some(line) = reports_rx.recv().await {
            println!("{line}");
        }
    });
    let summary = hearken::daemon::run(config, reports_tx, hearken::shutdown_signal()).await;
    let _ = printer.await;
    let summary = summary?;
    Ok(if summary.drained { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `hearken config check|default`.
pub(crate) fn config(command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Default => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        ConfigCommand::Check { file } => {
            let checked = Config::load(&file).map_err(|e| e.to_string()).and_then(|config| {
                let catalog = hearken::catalog::Catalog::load(&config.catalog).map_err(|e| e.to_string())?;
                config.broker_options().map_err(|e| e.to_string())?;
                Ok((config, catalog))
            });
            match checked {
                Ok((config, catalog)) => {
                    println!(
                        "{}",
                        json!({"config": file, "ok": true, "catalog": config.catalog, "site": catalog.site,
                               "devices": catalog.devices.len(), "audio": config.audio.source,
                               "activation": config.activation.mode, "audit": config.audit.path})
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_INVALID)
                }
            }
        }
    }
}
