//! `hearken devices import`: a catalog from what Zigbee2MQTT or Tasmota
//! already publish on the broker, with the operator's overlay on top.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use hearken::catalog::import::{self, Overlay};
use hearken::catalog::Catalog;
use hearken::mqtt::read_retained;

use crate::common::{BrokerArgs, EXIT_INVALID};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["z2m", "tasmota"])))]
/// `hearken devices import` flags.
pub(crate) struct ImportArgs {
    /// Read Zigbee2MQTT's retained `<base-topic>/bridge/devices` and `bridge/groups`.
    #[arg(long)]
    z2m: bool,
    /// Read Tasmota's retained discovery messages (`<discovery-prefix>/<mac>/config`).
    #[arg(long)]
    tasmota: bool,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Zigbee2MQTT's base topic.
    #[arg(long, default_value = "zigbee2mqtt")]
    base_topic: String,
    /// Tasmota's discovery prefix.
    #[arg(long, default_value = "tasmota/discovery")]
    discovery_prefix: String,
    /// Site name of the catalog (an overlay's `site` wins).
    #[arg(long, default_value = "home")]
    site: String,
    /// Hand-written changes applied to the import (names, aliases, areas,
    /// kinds, confirm lists, devices to skip, floors and areas); they
    /// survive every re-import.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// How long to wait for the broker.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

/// Prints the imported catalog on stdout and what was left out on stderr;
/// exits 2 when the result would not pass `hearken devices check`.
pub(crate) fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let overlay = match &args.overlay {
        Some(path) => Overlay::read(path)?,
        None => Overlay::default(),
    };
    let broker = args.broker.options()?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let (found, source) = if args.z2m {
        let devices = format!("{}/bridge/devices", args.base_topic);
        let groups = format!("{}/bridge/groups", args.base_topic);
        let retained =
            crate::runtime()?.block_on(read_retained(&broker, &[devices.clone(), groups.clone()], timeout))?;
        let payload = retained.get(&devices).with_context(|| {
            format!("nothing retained on {devices}: is Zigbee2MQTT running with base topic '{}'?", args.base_topic)
        })?;
        (import::z2m::import(payload, retained.get(&groups).map(Vec::as_slice), &args.base_topic)?, devices)
    } else {
        let filter = format!("{}/+/config", args.discovery_prefix);
        let retained = crate::runtime()?.block_on(read_retained(&broker, std::slice::from_ref(&filter), timeout))?;
        if retained.is_empty() {
            anyhow::bail!("nothing retained on {filter}: is SetOption19 0 (Tasmota discovery) on?");
        }
        let configs: Vec<(String, Vec<u8>)> = retained.into_iter().collect();
        (import::tasmota::import(&configs)?, filter)
    };
    for skipped in &found.skipped {
        eprintln!("skipped: {skipped}");
    }
    let text = import::write_catalog(&args.site, &found, &overlay, &format!("{} {source}", args.broker.broker));
    if let Err(e) = Catalog::parse(std::path::Path::new("<import>"), &text) {
        eprintln!("{e}");
        eprintln!("the imported catalog does not pass `hearken devices check`; fix the overlay:\n{text}");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
