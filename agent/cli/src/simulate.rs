//! `hearken simulate`: simulated devices for every device of a catalog.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use hearken_testkit::simulator::{Simulator, SimulatorConfig};

use crate::common::{load_catalog, BrokerArgs};

#[derive(Args)]
/// `hearken simulate` flags.
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    /// Delay before each acknowledgement.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random delay, uniform in 0..=jitter.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Probability of never answering.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Probability of answering late (after --late-ms).
    #[arg(long, default_value_t = 0.0)]
    late_rate: f64,
    /// Delay of late answers.
    #[arg(long, default_value_t = 1000)]
    late_ms: u64,
    /// Probability of a forged answer (wrong correlation, or an echo of the wrong state).
    #[arg(long, default_value_t = 0.0)]
    forge_rate: f64,
    /// Probability of a malformed answer.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// Probability of refusing the command.
    #[arg(long, default_value_t = 0.0)]
    reject_rate: f64,
    /// Probability of answering twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate_rate: f64,
    /// Random seed for reproducible faults.
    #[arg(long)]
    seed: Option<u64>,
}

/// Runs the simulated devices until SIGINT/SIGTERM, then prints their counts.
pub(crate) async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let catalog = match load_catalog(&args.catalog) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let config = SimulatorConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        drop_rate: args.drop_rate,
        late_rate: args.late_rate,
        late_by: Duration::from_millis(args.late_ms),
        forge_rate: args.forge_rate,
        malformed_rate: args.malformed_rate,
        reject_rate: args.reject_rate,
        duplicate_rate: args.duplicate_rate,
        seed: args.seed,
    };
    let simulator = Simulator::start(&args.broker.options()?, catalog.clone(), config)?;
    if !simulator.wait_ready(1, Duration::from_secs(10)).await {
        bail!("the simulator could not subscribe on {} within 10 s", args.broker.broker);
    }
    println!("{}", json!({"simulator": "ready", "site": catalog.site, "devices": catalog.devices.len()}));
    hearken::shutdown_signal().await;
    let s = simulator.stats();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{}",
        json!({"simulator": "stopped", "received": get(&s.received), "answered": get(&s.answered), "dropped": get(&s.dropped),
               "late": get(&s.late), "forged": get(&s.forged), "malformed": get(&s.malformed), "rejected": get(&s.rejected),
               "invalid": get(&s.invalid), "duplicate_commands": get(&s.duplicate_commands)})
    );
    simulator.stop().await;
    Ok(ExitCode::SUCCESS)
}
