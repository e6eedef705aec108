//! `hearken devices`: check and import catalogs, print the model-output schema, list audio inputs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use hearken::audio::capture;
use hearken::catalog::Catalog;
use hearken::intent;

use crate::common::{load_catalog, EXIT_INVALID};

#[derive(Subcommand)]
/// `hearken devices …`.
pub(crate) enum DevicesCommand {
    /// Validate catalogs; prints a summary per catalog, or every problem with
    /// file, device and field, and exits 2 on any error.
    Check {
        /// Catalog files (TOML).
        #[arg(required = true)]
        catalogs: Vec<PathBuf>,
    },
    /// Print the JSON Schema that constrains model output for a catalog.
    Schema {
        /// Catalog file (TOML).
        catalog: PathBuf,
    },
    /// List audio input devices (one JSON line each: index, name, rate, channels, default).
    Audio,
    /// Print a catalog of the devices Zigbee2MQTT or Tasmota publish on the
    /// broker (what was left out goes to stderr); exits 2 if it would not
    /// pass `devices check`.
    Import(Box<crate::import::ImportArgs>),
}

/// Runs one `devices` subcommand.
pub(crate) fn run(command: DevicesCommand) -> anyhow::Result<ExitCode> {
    match command {
        DevicesCommand::Check { catalogs } => Ok(devices_check(&catalogs)),
        DevicesCommand::Schema { catalog } => match load_catalog(&catalog) {
            Ok(catalog) => {
                println!("{}", serde_json::to_string_pretty(&intent::command_schema(&catalog))?);
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        DevicesCommand::Import(args) => crate::import::import(*args),
        DevicesCommand::Audio => {
            for device in capture::list_input_devices()? {
                println!("{}", serde_json::to_string(&device)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn devices_check(paths: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        match Catalog::load(path) {
            Ok(catalog) => {
                let confirm: usize = catalog.devices.iter().map(|d| d.confirm.len()).sum();
                println!(
                    "{}",
                    json!({
                        "catalog": path,
                        "ok": true,
                        "site": catalog.site,
                        "devices": catalog.devices.len(),
                        "actions": catalog.devices.iter().map(|d| d.actions.len()).sum::<usize>(),
                        "confirm_actions": confirm,
                    })
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}
