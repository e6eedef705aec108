//! Benchmarks behind `hearken bench`. They report medians, tails and counts
//! as one JSON object; they never assert on time (that is for people reading
//! the numbers, on a machine they know).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::catalog::{Catalog, CatalogError};
use crate::command::Command;
use crate::mqtt::{BrokerOptions, CommandLink, LinkStats, MqttError, Outcome};
use crate::simulator::{Simulator, SimulatorConfig, SimulatorError};
use crate::testbed::{Mosquitto, TestbedError};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The broker could not be started.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    /// The catalog is unusable.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The link could not connect.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The simulator could not start.
    #[error(transparent)]
    Simulator(#[from] SimulatorError),
    /// The simulator did not subscribe in time.
    #[error("the device simulator did not subscribe within 5 s")]
    SimulatorNotReady,
}

/// Settings of `hearken bench mqtt`.
#[derive(Debug, Clone)]
pub struct MqttBenchOptions {
    /// Broker to use; `None` starts a private Mosquitto on a free port.
    pub broker: Option<String>,
    /// Catalog to command; `None` uses a generated one of hearken-protocol devices.
    pub catalog: Option<std::path::PathBuf>,
    /// Commands in the concurrent phase.
    pub commands: usize,
    /// Commands in flight at once in the concurrent phase.
    pub in_flight: usize,
    /// Commands sent one at a time in the sequential phase.
    pub sequential: usize,
    /// Offered load of the paced phase, in commands per second.
    pub rate: f64,
    /// Commands in the paced phase.
    pub paced: usize,
}

/// Latency percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Acknowledged commands measured.
    pub count: usize,
    /// Median publish → acknowledgement.
    pub median_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// The report of `hearken bench mqtt`.
#[derive(Debug, Clone, Serialize)]
pub struct MqttBenchReport {
    /// Always `"mqtt"`.
    pub bench: &'static str,
    /// The broker used.
    pub broker: String,
    /// One command at a time: the latency a single utterance sees.
    pub sequential: Latencies,
    /// `in_flight` commands at once, as fast as they are acknowledged
    /// (closed loop: latency here is queueing, `in_flight / throughput`).
    pub concurrent: Latencies,
    /// Commands started at a steady `rate` (open loop, at most `in_flight`
    /// outstanding), measured from their start including any wait for a free
    /// slot: the latency at that load.
    pub paced: Latencies,
    /// Offered load of the paced phase.
    pub paced_rate_per_sec: f64,
    /// Commands in flight in the concurrent phase.
    pub in_flight: usize,
    /// Acknowledged commands per second in the concurrent phase.
    pub acknowledged_per_sec: f64,
    /// Commands sent (both phases).
    pub sent: u64,
    /// Commands acknowledged (both phases).
    pub acknowledged: u64,
    /// Commands with any other outcome.
    pub not_acknowledged: u64,
    /// Acknowledgements that matched an already acknowledged command.
    pub duplicate_acks: u64,
    /// Commands the devices received more than once.
    pub duplicate_commands: u64,
}

/// A catalog of hearken-protocol devices with generous budgets, so the
/// benchmark measures latency rather than counting timeouts.
fn bench_catalog() -> Result<Catalog, CatalogError> {
    let mut text = String::from("site = \"bench\"\nbudget_ms = 5000\n");
    for i in 0..16 {
        text.push_str(&format!(
            "[[devices]]\nid = \"bench_{i:02}\"\nname = \"bench device {i}\"\nactions = [\"turn_on\", \"turn_off\", \"set_level\"]\n[devices.params.set_level]\nmin = 0\nmax = 100\n"
        ));
    }
    Catalog::parse(Path::new("<bench>"), &text)
}

/// The i-th benchmark command: cycles through devices and actions.
fn nth_command(catalog: &Catalog, i: usize) -> Command {
    let device = &catalog.devices[i % catalog.devices.len()];
    let action = &device.actions[(i / catalog.devices.len()) % device.actions.len()];
    let value = device.param(action).map(|r| r.min + (i as i64 % (r.max - r.min + 1)));
    Command { device: device.id.clone(), action: action.clone(), value }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    crate::millis(sorted[rank.min(sorted.len() - 1)])
}

fn summarize(mut samples: Vec<Duration>) -> Latencies {
    samples.sort();
    Latencies {
        count: samples.len(),
        median_ms: percentile(&samples, 0.5),
        p95_ms: percentile(&samples, 0.95),
        p99_ms: percentile(&samples, 0.99),
        max_ms: samples.last().map_or(0.0, |d| crate::millis(*d)),
    }
}

/// Sends commands through a real broker to the simulator (zero latency) and
/// reports publish → acknowledgement latency and throughput.
pub async fn mqtt(options: &MqttBenchOptions) -> Result<MqttBenchReport, BenchError> {
    let (_broker, url) = match &options.broker {
        Some(url) => (None, url.clone()),
        None => {
            let broker = Mosquitto::start()?;
            let url = broker.url();
            (Some(broker), url)
        }
    };
    let catalog = Arc::new(match &options.catalog {
        Some(path) => Catalog::load(path)?,
        None => bench_catalog()?,
    });
    let broker = BrokerOptions::new(url.clone());
    let simulator = Simulator::start(&broker, catalog.clone(), SimulatorConfig::default())?;
    if !simulator.wait_ready(1, Duration::from_secs(5)).await {
        return Err(BenchError::SimulatorNotReady);
    }
    let link = CommandLink::start(&broker, catalog.clone())?;
    link.wait_connected(Duration::from_secs(5)).await?;

    let mut not_acknowledged = 0u64;
    let mut sequential = Vec::with_capacity(options.sequential);
    for i in 0..options.sequential {
        let command = nth_command(&catalog, i);
        match link.send(&command).await {
            Ok(d) if d.outcome == Outcome::Acknowledged => sequential.push(d.latency),
            _ => not_acknowledged += 1,
        }
    }

    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let per_worker = options.commands.div_ceil(options.in_flight.max(1));
    for worker in 0..options.in_flight.max(1) {
        let link = link.clone();
        let catalog = catalog.clone();
        let first = worker * per_worker;
        let last = ((worker + 1) * per_worker).min(options.commands);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(last.saturating_sub(first));
            let mut failed = 0u64;
            for i in first..last {
                match link.send(&nth_command(&catalog, i)).await {
                    Ok(d) if d.outcome == Outcome::Acknowledged => latencies.push(d.latency),
                    _ => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let mut concurrent = Vec::with_capacity(options.commands);
    while let Some(joined) = tasks.join_next().await {
        if let Ok((latencies, failed)) = joined {
            concurrent.extend(latencies);
            not_acknowledged += failed;
        }
    }
    let elapsed = started.elapsed();

    let (paced, paced_failed) = paced_phase(&link, &catalog, options).await;
    not_acknowledged += paced_failed;
    // Let stray duplicates, if any, arrive before counting them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acknowledged_per_sec = concurrent.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let stats = link.stats();
    let report = MqttBenchReport {
        bench: "mqtt",
        broker: url,
        sequential: summarize(sequential),
        concurrent: summarize(concurrent),
        paced: summarize(paced),
        paced_rate_per_sec: options.rate,
        in_flight: options.in_flight,
        acknowledged_per_sec: (acknowledged_per_sec * 10.0).round() / 10.0,
        sent: LinkStats::get(&stats.published),
        acknowledged: LinkStats::get(&stats.acknowledged),
        not_acknowledged,
        duplicate_acks: LinkStats::get(&stats.duplicate_acks),
        duplicate_commands: LinkStats::get(&simulator.stats().duplicate_commands),
    };
    link.shutdown().await;
    simulator.stop().await;
    Ok(report)
}

/// Starts commands at a steady rate with at most `in_flight` outstanding and
/// measures each from its scheduled start, so a backlog shows up as latency.
async fn paced_phase(link: &CommandLink, catalog: &Arc<Catalog>, options: &MqttBenchOptions) -> (Vec<Duration>, u64) {
    if options.paced == 0 || options.rate <= 0.0 {
        return (Vec::new(), 0);
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(options.in_flight.max(1)));
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..options.paced {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        // Measured from the wake-up, not `scheduled`: the timer's millisecond
        // granularity is the benchmark's artefact; waiting for a permit (a
        // backlog) is counted.
        let began = tokio::time::Instant::now();
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let link = link.clone();
        let command = nth_command(catalog, i);
        tasks.spawn(async move {
            let result = link.send(&command).await;
            drop(permit);
            match result {
                Ok(d) if d.outcome == Outcome::Acknowledged => Some(began.elapsed()),
                _ => None,
            }
        });
    }
    let mut latencies = Vec::with_capacity(options.paced);
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Some(latency)) => latencies.push(latency),
            _ => failed += 1,
        }
    }
    (latencies, failed)
}
