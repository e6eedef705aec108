//! `hearken bench soak`: thousands of commands through the daemon's text
//! path (`audio.source = "text"`, one request per line on its standard
//! input) against a real Mosquitto and the simulated devices, with faults
//! injected all along: acknowledgements dropped, late, duplicated, forged
//! or malformed; the broker killed and restarted at random moments; the
//! engine processes killed; an online intent API that answers 500. Requests
//! go one at a time, so every message on the wire can be traced to the
//! request it belongs to. At the end every command is accounted for and the
//! invariants are checked: nothing unaccounted, nothing published twice or
//! after a reconnect, nothing outside the catalog, an audit log that
//! verifies, and the daemon's memory at start and end.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::simulator::{Simulator, SimulatorConfig};
use crate::testbed::Mosquitto;
use hearken::catalog::protocol::{self, Protocol};
use hearken::catalog::Catalog;
use hearken::catalog::Command;
use hearken::config::{AudioSource, Config, OnlineConfig, OnlineEndpointConfig, Privacy};
use hearken::host::resident_kib;
use hearken::local::EngineProcess;
use hearken::models;
use hearken::mqtt::BrokerOptions;

/// Arguments of `hearken bench soak`.
#[derive(Args)]
pub struct BenchSoakArgs {
    /// Commands to drive through the daemon (requests carry one to three each).
    #[arg(long, default_value_t = 10_000)]
    commands: usize,
    /// The home catalog (the requests name its devices; another catalog's
    /// devices would leave them without commands).
    #[arg(long, default_value = "devices/home.toml")]
    catalog: PathBuf,
    /// Probability per command of an acknowledgement fault: dropped, late,
    /// duplicated, forged or malformed, in equal shares.
    #[arg(long, default_value_t = 0.02)]
    ack_fault_rate: f64,
    /// A disruption (broker restart, speech or intent engine killed, in turn)
    /// every this many commands, on average.
    #[arg(long, default_value_t = 150)]
    disruption_every: usize,
    /// Seed of the requests and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the daemon's config, audit log and stderr in this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// Requests settled by their words ({n}: a number drawn in the action's range).
const REQUESTS: &[&str] = &[
    "turn on the kitchen light",
    "turn off the kitchen light",
    "set the kitchen light brightness to {n}",
    "turn on the living room lamp",
    "turn off the living room lamp",
    "turn on the bedroom light",
    "turn off the bedroom light",
    "turn on the porch light",
    "turn off the porch light",
    "set the living room blinds to {n} percent",
    "close the living room blinds",
    "set the thermostat to {n} degrees",
    "turn on the ceiling fan",
    "turn off the ceiling fan",
    "turn on the tv",
    "turn off the tv",
    "set the tv volume to {n}",
    "pause the kitchen speaker",
    "turn on the coffee machine",
    "turn off the coffee machine",
    "start the robot vacuum",
    "stop the robot vacuum",
    "lock the front door",
    "turn off the kitchen light and the ceiling fan",
    "turn on the porch light and the coffee machine",
    "turn off the tv and the bedroom light and the porch light",
];

/// Requests the words leave to the model (sent to the failing online API first).
const MODEL_REQUESTS: &[&str] = &["i want the living room lamp dimmer", "make the kitchen light warmer"];

/// What the spy saw on the broker.
struct Seen {
    at: Instant,
    topic: String,
    payload: Vec<u8>,
}

/// One request and what the daemon reported for it.
struct Request {
    written: Instant,
    report: Value,
}

/// Runs the soak and prints one JSON report; exits 1 when an invariant fails.
pub async fn bench_soak(args: BenchSoakArgs) -> anyhow::Result<ExitCode> {
    let catalog = Arc::new(Catalog::load(&args.catalog)?);
    let scratch = tempfile::tempdir()?;
    let dir = args.keep.clone().unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let mut rng = StdRng::seed_from_u64(args.seed);

    let mut broker = Mosquitto::start().context("cannot start a private Mosquitto (run scripts/setup.sh)")?;
    let share = args.ack_fault_rate / 5.0;
    let simulator = Simulator::start(
        &BrokerOptions::new(broker.url()),
        catalog.clone(),
        SimulatorConfig {
            latency: Duration::from_millis(2),
            drop_rate: share,
            late_rate: share,
            late_by: Duration::from_millis(600),
            forge_rate: share,
            malformed_rate: share,
            duplicate_rate: share,
            seed: Some(args.seed),
            ..SimulatorConfig::default()
        },
    )?;
    if !simulator.wait_ready(1, Duration::from_secs(10)).await {
        bail!("the simulated devices could not subscribe");
    }
    let seen = spy(&broker.url())?;

    // The online intent API: a real hearken-llama that answers every request with a 500.
    let llm = models::smollm2_135m_path(&models::cache_dir());
    let online_args: Vec<String> = vec![
        "--model".into(),
        llm.display().to_string(),
        "--threads".into(),
        "1".into(),
        "--fault".into(),
        "status500".into(),
    ];
    let online = EngineProcess::start("hearken-llama", &online_args, Duration::from_secs(120))
        .await
        .context("the failing online intent API")?;
    let online_key = dir.join("online.key");
    std::fs::write(&online_key, &online.token)?;

    let config_path = dir.join("soak.toml");
    let audit_path = dir.join("audit.log");
    let _ = std::fs::remove_file(&audit_path);
    std::fs::write(&config_path, soak_config(&args.catalog, &broker.url(), &audit_path, &online.url, &online_key)?)?;
    let exe = std::env::current_exe()?;
    let mut daemon = tokio::process::Command::new(exe)
        .args(["run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(dir.join("daemon.stderr"))?))
        // Its own process group, with the engines it starts: on an early exit the
        // guard kills them all, so no engine outlives the soak.
        .process_group(0)
        .spawn()?;
    let daemon_pid = daemon.id().context("the daemon exited at once")?;
    let _group = ProcessGroup(daemon_pid);
    let mut stdin = daemon.stdin.take().context("no stdin")?;
    let mut reports = BufReader::new(daemon.stdout.take().context("no stdout")?).lines();
    let ready =
        next_report(&mut reports, Duration::from_secs(180)).await?.context("the daemon stopped before ready")?;
    if ready["daemon"] != "ready" {
        bail!("the daemon's first line is not ready: {ready}");
    }
    let rss_start_kib = resident_kib(daemon_pid).unwrap_or(0);
    eprintln!("bench soak: daemon ready (RSS {rss_start_kib} KiB); {} commands", args.commands);

    let mut requests: Vec<Request> = Vec::new();
    let mut commands = 0;
    let mut disruptions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut next_disruption = args.disruption_every;
    let mut previous = usize::MAX;
    let mut missing_reports = 0;
    while commands < args.commands {
        let line = if requests.len() % 25 == 24 {
            MODEL_REQUESTS[rng.gen_range(0..MODEL_REQUESTS.len())].to_owned()
        } else {
            // Never the same request twice in a row: a replayed command would hide in its twin.
            let mut pick = rng.gen_range(0..REQUESTS.len());
            if pick == previous {
                pick = (pick + 1) % REQUESTS.len();
            }
            previous = pick;
            REQUESTS[pick].replace("{n}", &number_for(REQUESTS[pick], &mut rng).to_string())
        };
        let written = Instant::now();
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        if commands >= next_disruption {
            next_disruption += rng.gen_range(args.disruption_every / 2..=args.disruption_every * 3 / 2).max(1);
            // At a random moment while the request is in flight.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
            let kind = disrupt(disruptions.values().sum(), &mut broker, daemon_pid, &mut rng)?;
            *disruptions.entry(kind).or_default() += 1;
        }
        let number = requests.len() as u64 + 1;
        let report = loop {
            match next_report(&mut reports, Duration::from_secs(120)).await? {
                Some(report) if report["line"].as_u64() == Some(number) => break Some(report),
                Some(_) => continue,
                None => break None,
            }
        };
        let Some(report) = report else {
            missing_reports += 1;
            break;
        };
        commands += report["commands"].as_array().map_or(0, Vec::len);
        requests.push(Request { written, report });
        if requests.len() >= 100 && commands == 0 {
            bail!("100 requests gave no command: is {} the home catalog?", args.catalog.display());
        }
        if requests.len().is_multiple_of(500) {
            eprintln!("bench soak: {} requests, {commands} commands", requests.len());
        }
    }
    let rss_end_kib = resident_kib(daemon_pid).unwrap_or(0);
    drop(stdin);
    let exit = tokio::time::timeout(Duration::from_secs(30), daemon.wait()).await;
    let daemon_exit = match exit {
        Ok(Ok(status)) => status.code(),
        _ => None,
    };
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let verified = hearken::audit::verify(&audit_path);
    let audit_outcomes = audit_outcome_count(&audit_path);
    let wire = check_wire(&catalog, &requests, &seen.lock().unwrap_or_else(|p| p.into_inner()), ended);
    let stats = simulator.stats();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut not_handled: BTreeMap<String, u64> = BTreeMap::new();
    let mut online_failures = 0;
    for request in &requests {
        if let Some(stage) = request.report["error"]["stage"].as_str() {
            *not_handled.entry(stage.to_owned()).or_default() += 1;
        }
        for command in request.report["commands"].as_array().into_iter().flatten() {
            *outcomes.entry(category(command).to_owned()).or_default() += 1;
        }
        for attempt in request.report["route"]["intent"]["attempts"].as_array().into_iter().flatten() {
            if attempt["sent"] == true && attempt["outcome"] != "ok" {
                online_failures += 1;
            }
        }
    }
    let accounted: u64 = outcomes.values().sum();
    let ack_faults =
        get(&stats.dropped) + get(&stats.late) + get(&stats.forged) + get(&stats.malformed) + get(&stats.duplicated);
    let faults = ack_faults + disruptions.values().sum::<u64>() + online_failures;
    let invariants = json!({
        "unaccounted_commands": (commands as u64).saturating_sub(accounted) + missing_reports,
        "audit_outcomes_missing": accounted.saturating_sub(audit_outcomes),
        "published_twice": wire.duplicates + get(&stats.duplicate_commands),
        "published_after_reconnect": wire.stale + wire.reported_not_sent,
        "outside_catalog": wire.outside_catalog + get(&stats.invalid),
        "unexpected_on_wire": wire.unexpected,
        "audit_verifies": verified.is_ok(),
        "daemon_exit_code": daemon_exit,
    });
    let held = invariants["unaccounted_commands"] == 0
        && invariants["audit_outcomes_missing"] == 0
        && invariants["published_twice"] == 0
        && invariants["published_after_reconnect"] == 0
        && invariants["outside_catalog"] == 0
        && invariants["unexpected_on_wire"] == 0
        && verified.is_ok()
        && daemon_exit == Some(0);
    let report = json!({
        "bench": "soak",
        "requests": requests.len(),
        "commands": commands,
        "outcomes": outcomes,
        // Requests reported and audited with an error, by stage (no command: the engine
        // failed or a limit refused them).
        "requests_not_handled": not_handled,
        "faults": {
            "total": faults,
            "per_100_commands": 100.0 * faults as f64 / commands.max(1) as f64,
            "acks_dropped": get(&stats.dropped),
            "acks_late": get(&stats.late),
            "acks_duplicated": get(&stats.duplicated),
            "acks_forged": get(&stats.forged),
            "acks_malformed": get(&stats.malformed),
            "disruptions": disruptions,
            "online_errors": online_failures,
        },
        "invariants": invariants,
        "invariants_hold": held,
        "wire_messages_checked": wire.checked,
        "audit": match &verified {
            Ok(v) => json!({"records": v.records, "head": v.head}),
            Err(e) => json!({"error": e.to_string()}),
        },
        "daemon_rss_kib": {"start": rss_start_kib, "end": rss_end_kib},
    });
    println!("{report}");
    Ok(if held { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The daemon's config: the text source on stdin, every command limit off
/// but the in-flight bound, and the failing online intent API under `text`
/// with no budget, so every request that asks the model tries it first.
fn soak_config(catalog: &Path, broker: &str, audit: &Path, online_url: &str, key: &Path) -> anyhow::Result<String> {
    let catalog = std::fs::canonicalize(catalog)?;
    let mut config = Config::parse(Path::new("(soak)"), &format!("catalog = {:?}\n", catalog.display().to_string()))?;
    config.broker.url = broker.to_owned();
    config.audio.source = AudioSource::Text;
    config.audio.queue_utterances = 1;
    config.audit.path = audit.to_owned();
    config.engines.startup_timeout_ms = 120_000;
    config.engines.restart_backoff_min_ms = 100;
    config.stt.threads = 1;
    config.intent.threads = 2;
    config.limits.device_commands_per_minute = 0;
    config.limits.confirm_commands_per_minute = 0;
    config.online = OnlineConfig {
        privacy: Privacy::Text,
        budget_ms: 0,
        intent: Some(OnlineEndpointConfig {
            api_key_file: Some(key.to_owned()),
            timeout_ms: 1_000,
            ..OnlineEndpointConfig::new(online_url, "smollm2")
        }),
        ..OnlineConfig::default()
    };
    Ok(toml::to_string(&config)?)
}

/// A value inside the range of the request's action.
fn number_for(request: &str, rng: &mut StdRng) -> i64 {
    if request.contains("thermostat") {
        rng.gen_range(10..=30)
    } else if request.contains("brightness") {
        rng.gen_range(1..=254)
    } else {
        rng.gen_range(0..=100)
    }
}

/// Kills something, in turn: the broker (restarted after up to 300 ms), the
/// speech engine, the intent engine. Returns what it did.
fn disrupt(count: u64, broker: &mut Mosquitto, daemon_pid: u32, rng: &mut StdRng) -> anyhow::Result<&'static str> {
    match count % 3 {
        0 => {
            broker.stop();
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
            broker.restart()?;
            Ok("broker_restarts")
        }
        which => {
            let name = if which == 1 { "hearken-whisper" } else { "hearken-llama" };
            match child_named(daemon_pid, name) {
                Some(pid) => {
                    let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                    Ok(if which == 1 { "speech_engine_kills" } else { "intent_engine_kills" })
                }
                None => Ok("engine_not_running"),
            }
        }
    }
}

/// Kills a process group when dropped (a no-op once its processes have exited).
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0);
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    }
}

/// The pid of the daemon's child process called `name`, if running.
fn child_named(parent: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == name.chars().take(15).collect::<String>() {
                return Some(pid);
            }
        }
    }
    None
}

/// The next report line, `None` at the end of the daemon's output.
async fn next_report(
    reports: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    timeout: Duration,
) -> anyhow::Result<Option<Value>> {
    let line =
        tokio::time::timeout(timeout, reports.next_line()).await.context("no report from the daemon in time")??;
    Ok(match line {
        Some(line) => Some(serde_json::from_str(&line).with_context(|| format!("not a report line: {line}"))?),
        None => None,
    })
}

/// How a command ended, for the tally: the daemon's outcome, with commands
/// that hearken itself held back (limits, validation) as `refused`.
fn category(command: &Value) -> &str {
    let outcome = command["outcome"].as_str().unwrap_or("missing");
    let reason = command["reason"].as_str().unwrap_or("");
    if outcome == "not_sent" && ["refused", "rate limit", "in-flight limit"].iter().any(|r| reason.starts_with(r)) {
        "refused"
    } else {
        outcome
    }
}

/// `outcome` records in the audit log.
fn audit_outcome_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["kind"] == "outcome").count() as u64
}

/// Subscribes to everything on the broker, reconnecting after restarts.
fn spy(url: &str) -> anyhow::Result<Arc<Mutex<Vec<Seen>>>> {
    let options = BrokerOptions::new(url).to_mqtt_options(&format!("hearken-soak-spy-{}", std::process::id()))?;
    let (client, mut events) = AsyncClient::new(options, 4096);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("#", QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                    let entry = Seen { at: Instant::now(), topic, payload: publish.payload.to_vec() };
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    Ok(seen)
}

/// What the wire check found.
#[derive(Default)]
struct Wire {
    checked: u64,
    duplicates: u64,
    stale: u64,
    reported_not_sent: u64,
    outside_catalog: u64,
    unexpected: u64,
}

/// Traces every command message the spy saw to the request in flight when
/// it was seen (requests go one at a time): it must be one of that
/// request's commands that the daemon says went out, seen once.
fn check_wire(catalog: &Catalog, requests: &[Request], seen: &[Seen], ended: Instant) -> Wire {
    let wire_of = |command: &Command| -> Option<(String, Vec<u8>)> {
        let device = catalog.device(&command.device)?;
        let outbound = protocol::encode(
            device.protocol,
            &device.topic,
            command,
            device.keys.get(&command.action).map(String::as_str),
            &[],
        )
        .ok()?;
        Some((outbound.topic, outbound.payload))
    };
    let is_command_topic = |topic: &str| topic.ends_with("/set") || topic.starts_with("cmnd/");
    let catalog_topic = |topic: &str| {
        catalog.devices.iter().any(|d| match d.protocol {
            Protocol::Tasmota => topic.starts_with(&format!("cmnd/{}/", d.topic)),
            Protocol::Hearken | Protocol::Zigbee2mqtt => topic == format!("{}/set", d.topic),
        })
    };
    let parsed = |request: &Request| -> Vec<(Command, bool)> {
        request.report["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let command = Command {
                    device: c["device"].as_str()?.to_owned(),
                    action: c["action"].as_str()?.to_owned(),
                    value: c["value"].as_i64(),
                };
                Some((command, c["outcome"] != "not_sent"))
            })
            .collect()
    };
    let mut wire = Wire::default();
    let mut earlier: HashSet<(String, Vec<u8>)> = HashSet::new();
    for (i, request) in requests.iter().enumerate() {
        let until = requests.get(i + 1).map_or(ended, |next| next.written);
        let commands = parsed(request);
        let mut used: HashSet<(String, Vec<u8>)> = HashSet::new();
        for message in seen.iter().filter(|m| m.at >= request.written && m.at < until && is_command_topic(&m.topic)) {
            wire.checked += 1;
            let key = (message.topic.clone(), message.payload.clone());
            let own = commands.iter().find(|(c, _)| wire_of(c).as_ref() == Some(&key));
            match own {
                Some((_, true)) if used.insert(key.clone()) => {}
                Some((_, true)) => wire.duplicates += 1,
                Some((_, false)) => wire.reported_not_sent += 1,
                None if !catalog_topic(&message.topic) => wire.outside_catalog += 1,
                None if earlier.contains(&key) => wire.stale += 1,
                None => wire.unexpected += 1,
            }
        }
        earlier.extend(commands.iter().filter_map(|(c, _)| wire_of(c)));
    }
    wire
}
