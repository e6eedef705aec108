//! The daemon behind `hearken run`: capture → VAD → STT engine → intent
//! engine → catalog validation → confirmation policy → MQTT publish →
//! acknowledgement → audit record → event.
//!
//! This module is the wiring only; each stage lives in its own folder
//! (see the crate's layout doc).
//!
//! - `worker`: STT, activation, intent and confirmations for each utterance.
//! - `dispatch`: publishes commands, waits for acknowledgements, completes the
//!   audit record, publishes events, records late acknowledgements.
//! - [`metrics`]: the Prometheus endpoint.
//! - `notify`: systemd's READY / STATUS / WATCHDOG / STOPPING.
//!
//! Only the source hears the shutdown signal directly; the other stages
//! drain what is already in their channels, within `shutdown.drain_timeout_ms`.

mod dispatch;
mod follow;
pub mod metrics;
mod notify;
mod reload;
mod report;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::audio::source;
use crate::audit::{AuditLog, AuditOptions, FsyncPolicy};
use crate::catalog::Catalog;
use crate::config::{AudioSource, Config, EngineConfig};
use crate::intent::ChatClient;
use crate::intent::{Interpreter, InterpreterConfig};
use crate::local::supervisor::{EngineSpec, Supervisor};
use crate::local::LocalLane;
use crate::models;
use crate::mqtt::control;
use crate::mqtt::homeassistant::{self, Entity, HomeAssistant};
use crate::mqtt::CommandLink;
use crate::online::Online;
use crate::policy::rate_limit::RateLimits;

/// Errors that stop the daemon (everything per utterance is reported and audited instead).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The SIGHUP handler cannot be installed.
    #[error("cannot handle SIGHUP (catalog reload): {source}")]
    Signal {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The audit log cannot be opened or written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The broker settings are unusable.
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    /// An engine did not come up.
    #[error("{engine} engine: {reason}")]
    Engine {
        /// `stt` or `intent`.
        engine: &'static str,
        /// Why.
        reason: String,
    },
    /// The intent engine came up but could not be used (client, prompt warm-up).
    #[error("intent engine: {0}")]
    IntentEngine(#[source] crate::intent::NluError),
    /// The audio input failed.
    #[error(transparent)]
    Source(#[from] crate::audio::SourceError),
    /// The VAD settings are invalid.
    #[error(transparent)]
    Vad(#[from] crate::audio::vad::VadError),
    /// The online fallback's settings are unusable (an API key file, a device id).
    #[error("online: {0}")]
    Online(#[from] crate::online::OnlineError),
    /// The metrics endpoint cannot listen.
    #[error("metrics endpoint {address}: {source}")]
    Metrics {
        /// The configured address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Where report lines (one JSON object per utterance or decision) go.
pub type Reports = mpsc::Sender<Value>;

/// How the run ended.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Whether draining finished within its deadline.
    pub drained: bool,
    /// Engine restarts (stt, intent).
    pub restarts: (u64, u64),
}

/// Utterances the MQTT stage may hold before the worker waits.
const DISPATCH_QUEUE: usize = 8;

/// Runs the daemon until `shutdown` resolves or the audio source ends (a
/// file), then drains. Report lines go to `reports`; the first is
/// `{"daemon":"ready",…}`, sent once the engines are healthy.
pub async fn run(config: Config, reports: Reports, shutdown: impl Future<Output = ()>) -> Result<Summary, DaemonError> {
    let notifier = notify::Notifier::from_env();
    let catalog = Arc::new(Catalog::load(&config.catalog)?);
    let area = Some(config.audio.area.clone()).filter(|a| !a.is_empty());
    if let Some(area) = &area {
        if !catalog.areas.iter().any(|a| &a.name == area) {
            let known: Vec<&str> = catalog.areas.iter().map(|a| a.name.as_str()).collect();
            return Err(DaemonError::Config(crate::config::ConfigError::Invalid {
                file: config.catalog.clone(),
                field: "audio.area".to_owned(),
                message: format!("'{area}' is not an area of the catalog (areas: {})", known.join(", ")),
            }));
        }
    }
    let audit = Arc::new(AuditLog::open(&config.audit.path, audit_options(&config))?);
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(listen) = &config.metrics.listen {
        // Bound here, so a taken port stops the start-up instead of failing later.
        let listener = tokio::net::TcpListener::bind(listen.as_str())
            .await
            .map_err(|source| DaemonError::Metrics { address: listen.clone(), source })?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, metrics).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    let broker = config.broker_options()?;
    let link = CommandLink::start_bounded(&broker, catalog.clone(), config.limits.mqtt_in_flight)?;
    let (control_tx, control_rx) = mpsc::channel(16);
    control::start(&broker, &catalog.site, control_tx.clone())?;
    reload_on_sighup(control_tx.clone())?;
    if config.zigbee2mqtt.follow {
        let follow = follow::Follow {
            base_topic: config.zigbee2mqtt.base_topic.clone(),
            overlay: config.zigbee2mqtt.overlay.clone(),
            catalog: config.catalog.clone(),
            site: catalog.site.clone(),
            broker_url: config.broker.url.clone(),
        };
        follow::start(&broker, follow, control_tx)?;
    }
    let ha = &config.homeassistant;
    let homeassistant = match ha.discovery {
        Some(true) => Some(HomeAssistant::start(&broker, &catalog.site, &ha.prefix)?),
        Some(false) => {
            match homeassistant::remove(&broker, &catalog.site, &ha.prefix).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "Home Assistant discovery configs removed"),
                Err(e) => tracing::warn!(error = %e, "cannot remove the Home Assistant discovery configs"),
            }
            None
        }
        None => None,
    };

    notifier.status("starting engines");
    let stt = Arc::new(start_engine("stt", &config.stt, &config)?);
    let intent = Arc::new(start_engine("intent", &config.intent, &config)?);
    let startup = Duration::from_millis(config.engines.startup_timeout_ms);
    let stt_endpoint = stt.wait_up(startup).await.ok_or(DaemonError::Engine {
        engine: "stt",
        reason: format!("not healthy within {} ms", config.engines.startup_timeout_ms),
    })?;
    let intent_endpoint = intent.wait_up(startup).await.ok_or(DaemonError::Engine {
        engine: "intent",
        reason: format!("not healthy within {} ms", config.engines.startup_timeout_ms),
    })?;
    let intent_client = |timeout: Duration| {
        ChatClient::new(&intent_endpoint.url, intent_endpoint.token.clone(), "local", timeout)
            .map_err(|e| DaemonError::IntentEngine(e.into()))
    };
    // The first request prefills the catalog prompt into the engine's cache:
    // part of starting up (slow on a loaded box), so it gets the startup
    // timeout; utterances then get the request timeout.
    let startup_timeout = Duration::from_millis(config.engines.startup_timeout_ms);
    let interpreter = Interpreter::new(
        (*catalog).clone(),
        intent_client(startup_timeout)?,
        InterpreterConfig { max_commands: config.limits.max_commands, area, ..InterpreterConfig::default() },
    );
    interpreter.warm_up().await.map_err(DaemonError::IntentEngine)?;
    interpreter.set_client(intent_client(config.intent.timeout())?);
    let broker_connected = link.wait_connected(Duration::from_millis(config.broker.connect_timeout_ms)).await.is_ok();
    if !broker_connected {
        tracing::warn!(url = %config.broker.url, "broker not reachable yet; commands are not_sent until it is");
    }
    let mut start = Map::new();
    start.insert("catalog".into(), json!(config.catalog));
    start.insert("site".into(), json!(catalog.site));
    start.insert("activation".into(), json!(config.activation.mode));
    audit.append("daemon_start", start)?;

    let online = if config.online.configured() {
        let online = Online::from_config(&config.online, &catalog)?;
        Some(Arc::new(online))
    } else {
        None
    };
    let (utterances_tx, utterances_rx) = mpsc::channel(config.audio.queue_utterances);
    let stop_source = Arc::new(AtomicBool::new(false));
    let ids = source::UtteranceIds::default();
    let source = if config.audio.source == AudioSource::Text {
        let max_chars = config.limits.max_request_chars;
        source::spawn_text(config.audio.clone(), ids.clone(), max_chars, utterances_tx, stop_source.clone())
    } else {
        source::spawn(config.audio.clone(), ids.clone(), utterances_tx, stop_source.clone(), metrics.clone())
    };
    let (dispatch_tx, dispatch_rx) = mpsc::channel(DISPATCH_QUEUE);
    let rate_limits =
        RateLimits::new(config.limits.device_commands_per_minute, config.limits.confirm_commands_per_minute);
    let dispatcher = tokio::spawn(dispatch::run(
        dispatch_rx,
        link.clone(),
        rate_limits,
        audit.clone(),
        metrics.clone(),
        report::Announcer { reports: reports.clone(), homeassistant: homeassistant.clone() },
    ));
    let worker = worker::Worker {
        config: config.clone(),
        site: std::sync::RwLock::new(Arc::new(worker::SiteView::new(interpreter, &config))),
        stt: stt.clone(),
        intent: intent.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        announcer: report::Announcer { reports: reports.clone(), homeassistant: homeassistant.clone() },
        dispatch: dispatch_tx,
        link: link.clone(),
        online: online.clone(),
        lane: LocalLane::default(),
        ids,
    };
    let mut worker = tokio::spawn(worker.run(utterances_rx, control_rx));

    let _ = reports
        .send(json!({"daemon": "ready", "site": catalog.site, "stt": stt_endpoint.url, "intent": intent_endpoint.url,
                     "stt_pid": stt.pid(), "intent_pid": intent.pid(), "broker_connected": broker_connected,
                     "online": online_summary(&config)}))
        .await;
    notifier.ready(&format!("serving {} devices of site {}", catalog.devices.len(), catalog.site));

    // The main loop: nothing here waits on inference, so the watchdog only
    // goes quiet when the runtime itself is stuck.
    let watchdog = notify::watchdog_interval();
    let gpu = config.stt.gpu || config.intent.gpu;
    let mut tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5)));
    tokio::pin!(shutdown);
    let worker_finished = loop {
        tokio::select! {
            () = &mut shutdown => break false,
            _ = &mut worker => break true,
            _ = tick.tick() => {
                if watchdog.is_some() {
                    notifier.watchdog();
                }
                metrics.set_restarts("stt", stt.restarts());
                metrics.set_restarts("intent", intent.restarts());
                let pressure = crate::host::sample(gpu).await;
                if let Some(ha) = &homeassistant {
                    let on = |s: &Supervisor| if s.endpoint().borrow().is_some() { "ON" } else { "OFF" };
                    ha.state(Entity::SttEngine, on(&stt));
                    ha.state(Entity::IntentEngine, on(&intent));
                    let percent = |share: Option<f64>| share.map(|s| format!("{:.0}", s * 100.0)).unwrap_or_default();
                    ha.state(Entity::Cpu, percent(pressure.cpu_load));
                    ha.state(Entity::Memory, percent(pressure.memory_used));
                }
                metrics.set_host(pressure);
                let up = |s: &Supervisor| if s.endpoint().borrow().is_some() { "up" } else { "restarting" };
                notifier.status(&format!("serving; stt {}, intent {}, broker {}", up(&stt), up(&intent),
                    if link.is_connected() { "connected" } else { "disconnected" }));
            }
        }
    };

    // Drain: stop the source, let the worker finish what was heard and the
    // dispatcher what was decided, then close the link and flush the audit log.
    notifier.stopping();
    stop_source.store(true, Ordering::Relaxed);
    let deadline = Duration::from_millis(config.shutdown.drain_timeout_ms);
    // The stage being waited for, so that a missed deadline names it.
    let draining = std::sync::Mutex::new("worker (utterances heard, not yet handled)");
    let now_draining = |stage: &'static str| *draining.lock().unwrap_or_else(|p| p.into_inner()) = stage;
    let drained = tokio::time::timeout(deadline, async {
        if !worker_finished {
            let _ = (&mut worker).await;
        }
        now_draining("dispatch (commands waiting for their outcomes)");
        let _ = dispatcher.await;
        now_draining("mqtt link (publishes in flight)");
        if let Some(ha) = &homeassistant {
            ha.stop().await;
        }
        link.shutdown().await;
    })
    .await
    .is_ok();
    if !drained {
        worker.abort();
        let stage = *draining.lock().unwrap_or_else(|p| p.into_inner());
        tracing::warn!(
            stage,
            deadline_ms = config.shutdown.drain_timeout_ms,
            "drain deadline passed while waiting for the {stage}; in-flight work abandoned"
        );
    }
    let summary = Summary { drained, restarts: (stt.restarts(), intent.restarts()) };
    let mut stop = Map::new();
    stop.insert("drained".into(), json!(drained));
    stop.insert("dropped_utterances".into(), json!(metrics.dropped_utterances.load(Ordering::Relaxed)));
    audit.append("daemon_stop", stop)?;
    audit.sync()?;
    stt.stop().await;
    intent.stop().await;
    // A stdin reader blocked in read() cannot be interrupted: leave it to process exit.
    if source.is_finished() {
        if let Ok(Err(e)) = source.join() {
            tracing::warn!(error = %e, "audio source ended with an error");
        }
    }
    let _ = reports
        .send(json!({"daemon": "stopped", "drained": drained, "restarts": {"stt": summary.restarts.0, "intent": summary.restarts.1},
                     "dropped_utterances": metrics.dropped_utterances.load(Ordering::Relaxed)}))
        .await;
    Ok(summary)
}

/// What the ready line says about the online fallback: the policy and the
/// endpoints' base URLs (never their keys), or `null` when it is off.
fn online_summary(config: &Config) -> Value {
    let online = &config.online;
    if !online.configured() {
        return Value::Null;
    }
    let url = |endpoint: &Option<crate::config::OnlineEndpointConfig>| endpoint.as_ref().map(|e| e.url.clone());
    json!({"privacy": online.privacy, "stt": url(&online.stt), "intent": url(&online.intent), "budget_ms": online.budget_ms})
}

fn audit_options(config: &Config) -> AuditOptions {
    AuditOptions {
        fsync: if config.audit.fsync_interval_ms == 0 {
            FsyncPolicy::Always
        } else {
            FsyncPolicy::Interval(Duration::from_millis(config.audit.fsync_interval_ms))
        },
        max_bytes: Some(config.audit.max_bytes).filter(|b| *b > 0),
    }
}

/// A supervisor for one engine: the configured server, or a local process.
fn start_engine(name: &'static str, engine: &EngineConfig, config: &Config) -> Result<Supervisor, DaemonError> {
    let (env, binary, default_model) = match name {
        "stt" => ("HEARKEN_STT_TOKEN", "hearken-whisper", models::cache_dir().join(models::WHISPER_TINY_EN_GGML)),
        _ => ("HEARKEN_LLM_TOKEN", "hearken-llama", models::smollm2_135m_path(&models::cache_dir())),
    };
    if let Some(url) = &engine.url {
        let token = engine.token(&format!("{name}.token_file"), env)?;
        return Ok(Supervisor::remote(url.clone(), token));
    }
    let model = match (&engine.model, name) {
        (Some(model), "stt") => models::whisper_model_file(model),
        (Some(model), _) => model.clone(),
        (None, _) => default_model,
    };
    if !model.exists() {
        return Err(DaemonError::Engine {
            engine: name,
            reason: format!("{name}.model: no model at {}; run `hearken models fetch` or set it", model.display()),
        });
    }
    let mut args = vec![
        "--model".to_owned(),
        model.display().to_string(),
        "--threads".to_owned(),
        engine.threads_or_all().to_string(),
    ];
    if !engine.adaptive_threads {
        args.push("--fixed-threads".to_owned());
    }
    if engine.gpu {
        match name {
            "stt" => args.push("--gpu".to_owned()),
            // More layers than any small model has: all of them on the GPU.
            _ => args.extend(["--gpu-layers".to_owned(), "999".to_owned()]),
        }
    }
    Ok(Supervisor::local(name, EngineSpec { binary, args }, config.engines.clone()))
}

/// `systemctl reload hearken` (SIGHUP) reads the catalog file again; without
/// this, SIGHUP would end the daemon.
fn reload_on_sighup(control: mpsc::Sender<control::Control>) -> Result<(), DaemonError> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| DaemonError::Signal { source })?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if control.send(control::Control::Reload { trigger: "sighup" }).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
