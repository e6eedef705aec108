//! Engine supervision: keeps one inference engine available to the pipeline.
//! A configured server URL is used as is; otherwise the engine process is
//! started, watched (exit and `/health`), and restarted after a crash with
//! exponential backoff and jitter. The pipeline reads the current endpoint
//! from a watch channel: `None` while the engine is down or restarting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::SupervisionConfig;
use crate::local::process::EngineProcess;

/// Where a healthy engine answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL.
    pub url: String,
    /// Bearer token (not printed by `Debug` users: never log it).
    pub token: Option<String>,
    /// Increases with every (re)start, so users notice a new process.
    pub generation: u64,
}

/// What to start: the engine binary and its arguments.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// `hearken-whisper` or `hearken-llama`.
    pub binary: &'static str,
    /// Its arguments (model, threads).
    pub args: Vec<String>,
}

/// A supervised engine.
pub struct Supervisor {
    endpoint: watch::Receiver<Option<Endpoint>>,
    restarts: Arc<AtomicU64>,
    pid: Arc<AtomicU64>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

/// How long an engine must have run for its next crash to restart without the built-up backoff.
const STABLE_RUN: Duration = Duration::from_secs(30);

/// Consecutive failed health checks that make a running engine count as hung.
const HEALTH_FAILURES_TO_RESTART: u32 = 2;

impl Supervisor {
    /// An engine served elsewhere: always "up"; failures show per request.
    pub fn remote(url: String, token: Option<String>) -> Supervisor {
        let (_tx, endpoint) = watch::channel(Some(Endpoint { url, token, generation: 1 }));
        let (stop, _) = watch::channel(false);
        Supervisor {
            endpoint,
            restarts: Arc::new(AtomicU64::new(0)),
            pid: Arc::new(AtomicU64::new(0)),
            task: std::sync::Mutex::new(None),
            stop,
        }
    }

    /// Starts `spec` and keeps it running until [`Supervisor::stop`].
    pub fn local(name: &'static str, spec: EngineSpec, config: SupervisionConfig) -> Supervisor {
        let (endpoint_tx, endpoint) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let restarts = Arc::new(AtomicU64::new(0));
        let pid = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(supervise(name, spec, config, endpoint_tx, stop_rx, restarts.clone(), pid.clone()));
        Supervisor { endpoint, restarts, pid, task: std::sync::Mutex::new(Some(task)), stop }
    }

    /// The current endpoint (`None` while down); `changed()` on it wakes on every (re)start.
    pub fn endpoint(&self) -> watch::Receiver<Option<Endpoint>> {
        self.endpoint.clone()
    }

    /// Waits up to `timeout` for the engine to be up.
    pub async fn wait_up(&self, timeout: Duration) -> Option<Endpoint> {
        let mut endpoint = self.endpoint.clone();
        let up = tokio::time::timeout(timeout, endpoint.wait_for(Option::is_some)).await;
        match up {
            Ok(Ok(current)) => current.clone(),
            _ => None,
        }
    }

    /// Restarts after crashes or hangs so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The running process id (0 when none or remote), for tests and status lines.
    pub fn pid(&self) -> u64 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Stops supervising and kills a local engine.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn supervise(
    name: &'static str,
    spec: EngineSpec,
    config: SupervisionConfig,
    endpoint: watch::Sender<Option<Endpoint>>,
    mut stop: watch::Receiver<bool>,
    restarts: Arc<AtomicU64>,
    pid: Arc<AtomicU64>,
) {
    let min = Duration::from_millis(config.restart_backoff_min_ms);
    let max = Duration::from_millis(config.restart_backoff_max_ms);
    let mut backoff = min;
    let mut generation = 0;
    loop {
        let started = Instant::now();
        let startup = Duration::from_millis(config.startup_timeout_ms);
        let start = tokio::select! {
            started = EngineProcess::start(spec.binary, &spec.args, startup) => started,
            _ = stop.wait_for(|s| *s) => return,
        };
        match start {
            Ok(mut process) => {
                generation += 1;
                pid.store(u64::from(process.pid().unwrap_or(0)), Ordering::Relaxed);
                tracing::info!(engine = name, url = %process.url, pid = ?process.pid(), "engine up");
                let _ = endpoint.send(Some(Endpoint {
                    url: process.url.clone(),
                    token: Some(process.token.clone()),
                    generation,
                }));
                let url = process.url.clone();
                let why = tokio::select! {
                    status = process.exited() => format!("exited: {status}"),
                    why = hung(&url, Duration::from_millis(config.health_interval_ms)) => why,
                    _ = stop.wait_for(|s| *s) => {
                        let _ = endpoint.send(None);
                        return;
                    }
                };
                drop(process);
                let _ = endpoint.send(None);
                pid.store(0, Ordering::Relaxed);
                restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(engine = name, %why, "engine down; restarting");
                if started.elapsed() > STABLE_RUN {
                    backoff = min;
                }
            }
            Err(e) => tracing::warn!(engine = name, error = %e, "engine did not start"),
        }
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Resolves when `/health` has failed several times in a row: the engine is hung.
async fn hung(url: &str, interval: Duration) -> String {
    let client = reqwest::Client::new();
    let mut failures = 0;
    loop {
        tokio::time::sleep(interval).await;
        let answer = client.get(format!("{url}/health")).timeout(Duration::from_secs(5)).send().await;
        match answer {
            Ok(r) if r.status().is_success() => failures = 0,
            Ok(r) => {
                failures += 1;
                if failures >= HEALTH_FAILURES_TO_RESTART {
                    return format!("health answered {}", r.status());
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= HEALTH_FAILURES_TO_RESTART {
                    return format!("health check failed: {e}");
                }
            }
        }
    }
}
