//! Simulated devices that speak each protocol, with configurable latency and
//! faults, so tests and benchmarks exercise the real MQTT path.
//!
//! Each device of a catalog listens on its command topic, applies commands to
//! an in-memory state and acknowledges in its protocol: a correlated response
//! (hearken), a state echo (zigbee2mqtt) or a RESULT message (tasmota).
//! Faults are drawn per command from the configured rates: drop (no answer),
//! late (answer after `late_ms`), forge (an answer that must not count: wrong
//! correlation, or an echo of a state the command did not produce), malformed
//! (garbage payload), reject (the device refuses) and duplicate (answer twice).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use hearken::catalog::{Catalog, Command, Device};

use hearken::catalog::protocol::{tasmota_result_topic, AckStatus, HearkenAck, Protocol};
use hearken::mqtt::{BrokerOptions, MqttError};

/// Latency and fault settings. Rates are probabilities in `0..=1`; their sum
/// (without `duplicate_rate`, which combines with the others) must not exceed 1.
#[derive(Debug, Clone, Default)]
pub struct SimulatorConfig {
    /// Fixed delay before acknowledging.
    pub latency: Duration,
    /// Extra uniformly distributed delay in `0..=jitter`.
    pub jitter: Duration,
    /// Probability of never answering.
    pub drop_rate: f64,
    /// Probability of answering after `late_by` instead of `latency`.
    pub late_rate: f64,
    /// Delay of late answers.
    pub late_by: Duration,
    /// Probability of a forged answer (wrong correlation or wrong echoed state) instead of the real one.
    pub forge_rate: f64,
    /// Probability of a malformed answer instead of the real one.
    pub malformed_rate: f64,
    /// Probability of refusing the command (hearken protocol: status error; echo protocols: unchanged state).
    pub reject_rate: f64,
    /// Probability of answering twice.
    pub duplicate_rate: f64,
    /// Random seed, for reproducible fault sequences.
    pub seed: Option<u64>,
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A rate is not a probability, or the rates add up to more than 1.
    #[error("fault rates must be within 0..=1 and drop+late+forge+malformed+reject must not exceed 1: {0}")]
    BadRates(String),
    /// The broker options are unusable.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// Counters of what the simulated devices saw and did.
#[derive(Debug, Default)]
pub struct SimulatorStats {
    /// Commands received.
    pub received: AtomicU64,
    /// Commands received a second time (same correlation data): must stay 0.
    pub duplicate_commands: AtomicU64,
    /// Answers published (duplicates included).
    pub answered: AtomicU64,
    /// Commands dropped on purpose.
    pub dropped: AtomicU64,
    /// Commands answered late on purpose.
    pub late: AtomicU64,
    /// Forged answers.
    pub forged: AtomicU64,
    /// Malformed answers.
    pub malformed: AtomicU64,
    /// Refusals.
    pub rejected: AtomicU64,
    /// Commands answered twice on purpose.
    pub duplicated: AtomicU64,
    /// Messages on command topics that were not valid commands.
    pub invalid: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Drop,
    Late,
    Forge,
    Malformed,
    Reject,
}

/// A running simulator.
pub struct Simulator {
    stats: Arc<SimulatorStats>,
    ready: watch::Receiver<u64>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Connects to the broker and starts answering for every device of the catalog.
    pub fn start(
        broker: &BrokerOptions,
        catalog: Arc<Catalog>,
        config: SimulatorConfig,
    ) -> Result<Simulator, SimulatorError> {
        let rates = [
            config.drop_rate,
            config.late_rate,
            config.forge_rate,
            config.malformed_rate,
            config.reject_rate,
            config.duplicate_rate,
        ];
        if rates.iter().any(|r| !(0.0..=1.0).contains(r)) || rates[..5].iter().sum::<f64>() > 1.0 + 1e-9 {
            return Err(SimulatorError::BadRates(format!("{rates:?}")));
        }
        let client_id = format!("hearken-sim-{}", hex::encode(rand::random::<[u8; 6]>()));
        let options = broker.to_mqtt_options(&client_id)?;
        let (client, mut events) = AsyncClient::new(options, 4096);
        let stats = Arc::new(SimulatorStats::default());
        let (ready_tx, ready) = watch::channel(0u64);
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let devices = Devices::new(catalog, config, rng, client.clone(), stats.clone());
        let task = tokio::spawn(async move {
            let mut devices = devices;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => devices.subscribe(),
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        ready_tx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => devices.on_command(&publish),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("simulator connection: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(Simulator { stats, ready, client, task })
    }

    /// Waits until the devices are subscribed (the `n`-th subscription round
    /// since start; 1 for the first connection), or `timeout` passes.
    pub async fn wait_ready(&self, rounds: u64, timeout: Duration) -> bool {
        let mut ready = self.ready.clone();
        let waited = tokio::time::timeout(timeout, ready.wait_for(|n| *n >= rounds)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimulatorStats {
        &self.stats
    }

    /// Disconnects and stops answering.
    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        if tokio::time::timeout(Duration::from_secs(2), self.task).await.is_err() {
            tracing::warn!("simulator did not stop in time");
        }
    }
}

struct Devices {
    catalog: Arc<Catalog>,
    config: SimulatorConfig,
    rng: StdRng,
    client: AsyncClient,
    stats: Arc<SimulatorStats>,
    /// Command topic (or tasmota prefix) → device index.
    routes: HashMap<String, usize>,
    states: Arc<Mutex<Vec<Map<String, Value>>>>,
    seen_correlations: HashSet<Vec<u8>>,
}

impl Devices {
    fn new(
        catalog: Arc<Catalog>,
        config: SimulatorConfig,
        rng: StdRng,
        client: AsyncClient,
        stats: Arc<SimulatorStats>,
    ) -> Devices {
        let routes = catalog
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| match d.protocol {
                Protocol::Hearken | Protocol::Zigbee2mqtt => (format!("{}/set", d.topic), i),
                Protocol::Tasmota => (format!("cmnd/{}", d.topic), i),
            })
            .collect();
        let states = Arc::new(Mutex::new(vec![Map::new(); catalog.devices.len()]));
        Devices { catalog, config, rng, client, stats, routes, states, seen_correlations: HashSet::new() }
    }

    fn subscribe(&self) {
        let filters: Vec<Filter> = self
            .catalog
            .devices
            .iter()
            .map(|d| match d.protocol {
                Protocol::Hearken | Protocol::Zigbee2mqtt => format!("{}/set", d.topic),
                Protocol::Tasmota => format!("cmnd/{}/+", d.topic),
            })
            .map(|t| Filter::new(t, QoS::AtLeastOnce))
            .collect();
        if let Err(e) = self.client.try_subscribe_many(filters) {
            tracing::error!("simulator cannot subscribe: {e}");
        }
        // A stale retained state, as a real Zigbee2MQTT bridge leaves behind:
        // the engine must never take it for an acknowledgement.
        for device in self.catalog.devices.iter().filter(|d| d.protocol == Protocol::Zigbee2mqtt) {
            let _ = self.client.try_publish(device.topic.clone(), QoS::AtLeastOnce, true, r#"{"state":"UNKNOWN"}"#);
        }
    }

    fn draw_fault(&mut self) -> Fault {
        let c = &self.config;
        let r: f64 = self.rng.gen();
        let table = [
            (c.drop_rate, Fault::Drop),
            (c.late_rate, Fault::Late),
            (c.forge_rate, Fault::Forge),
            (c.malformed_rate, Fault::Malformed),
            (c.reject_rate, Fault::Reject),
        ];
        let mut acc = 0.0;
        for (rate, fault) in table {
            acc += rate;
            if r < acc {
                return fault;
            }
        }
        Fault::None
    }

    fn on_command(&mut self, publish: &Publish) {
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        let (route, tasmota_command) = match self.routes.get(&topic) {
            Some(&i) => (i, None),
            None => match topic.rsplit_once('/') {
                Some((prefix, cmd)) if self.routes.contains_key(prefix) => (self.routes[prefix], Some(cmd.to_owned())),
                _ => return,
            },
        };
        let Some(device) = self.catalog.devices.get(route).cloned() else { return };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let fault = self.draw_fault();
        let duplicate = self.rng.gen::<f64>() < self.config.duplicate_rate;
        let mut delay = self.config.latency;
        if !self.config.jitter.is_zero() {
            delay += self.config.jitter.mul_f64(self.rng.gen::<f64>());
        }
        let answer = match device.protocol {
            Protocol::Hearken => self.answer_hearken(&device, route, publish, fault),
            Protocol::Zigbee2mqtt => self.answer_echo(&device, route, &publish.payload, None, fault),
            Protocol::Tasmota => self.answer_echo(&device, route, &publish.payload, tasmota_command.as_deref(), fault),
        };
        let Some(answer) = answer else { return };
        match fault {
            Fault::Drop => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fault::Late => {
                self.stats.late.fetch_add(1, Ordering::Relaxed);
                delay = self.config.late_by;
            }
            Fault::Forge => {
                self.stats.forged.fetch_add(1, Ordering::Relaxed);
            }
            Fault::Malformed => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            }
            Fault::Reject => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Fault::None => {}
        }
        let copies = if duplicate {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let client = self.client.clone();
        let stats = self.stats.clone();
        let send = move || {
            for _ in 0..copies {
                let Answer { topic, payload, properties } = answer.clone();
                if client.try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties).is_ok() {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        if delay.is_zero() {
            send();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send();
            });
        }
    }

    fn answer_hearken(&mut self, device: &Device, index: usize, publish: &Publish, fault: Fault) -> Option<Answer> {
        let properties = publish.properties.clone().unwrap_or_default();
        let (Some(response_topic), Some(correlation)) = (properties.response_topic, properties.correlation_data) else {
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if !self.seen_correlations.insert(correlation.to_vec()) {
            self.stats.duplicate_commands.fetch_add(1, Ordering::Relaxed);
        }
        let parsed: Option<Command> = serde_json::from_slice(&publish.payload).ok();
        let ack = match parsed {
            _ if fault == Fault::Reject => {
                HearkenAck { status: AckStatus::Error, state: None, error: Some("simulated refusal".into()) }
            }
            Some(cmd) if cmd.device == device.id && self.catalog.check(&cmd).is_ok() => {
                let state = self.apply(index, &cmd.action, cmd.value);
                HearkenAck { status: AckStatus::Ok, state: Some(Value::Object(state)), error: None }
            }
            Some(cmd) => HearkenAck {
                status: AckStatus::Error,
                state: None,
                error: Some(format!("device {} cannot do {} {:?}", device.id, cmd.action, cmd.value)),
            },
            None => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                HearkenAck { status: AckStatus::Error, state: None, error: Some("payload is not a command".into()) }
            }
        };
        let correlation =
            if fault == Fault::Forge { Bytes::from(rand::random::<[u8; 16]>().to_vec()) } else { correlation };
        let payload = if fault == Fault::Malformed {
            b"{\"status\": ok".to_vec()
        } else {
            serde_json::to_vec(&ack).unwrap_or_default()
        };
        let properties = PublishProperties { correlation_data: Some(correlation), ..PublishProperties::default() };
        Some(Answer { topic: response_topic, payload, properties })
    }

    /// zigbee2mqtt (`tasmota_command` is `None`) or tasmota.
    fn answer_echo(
        &mut self,
        device: &Device,
        index: usize,
        payload: &[u8],
        tasmota_command: Option<&str>,
        fault: Fault,
    ) -> Option<Answer> {
        let before = self.state_of(index);
        let changes: Map<String, Value> = match tasmota_command {
            None => match serde_json::from_slice::<Value>(payload) {
                Ok(Value::Object(map)) => map,
                _ => {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            },
            Some(cmd) => {
                let text = String::from_utf8_lossy(payload).trim().to_owned();
                let value = text.parse::<i64>().map_or_else(|_| json!(text.to_uppercase()), |n| json!(n));
                let mut map = Map::new();
                map.insert(cmd.to_owned(), value);
                map
            }
        };
        let after = if matches!(fault, Fault::Reject | Fault::Forge) {
            before
        } else {
            let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
            let state = states.get_mut(index)?;
            state.extend(changes.clone());
            state.clone()
        };
        let (topic, body) = match tasmota_command {
            None => (device.topic.clone(), Value::Object(after)),
            Some(_) => {
                let mut result = Map::new();
                for key in changes.keys() {
                    result.insert(key.clone(), after.get(key).cloned().unwrap_or(Value::Null));
                }
                (tasmota_result_topic(&device.topic), Value::Object(result))
            }
        };
        let payload = if fault == Fault::Malformed { b"\x00not json".to_vec() } else { body.to_string().into_bytes() };
        Some(Answer { topic, payload, properties: PublishProperties::default() })
    }

    fn state_of(&self, index: usize) -> Map<String, Value> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(index).cloned().unwrap_or_default()
    }

    /// Applies a hearken-protocol action to the simulated state.
    fn apply(&self, index: usize, action: &str, value: Option<i64>) -> Map<String, Value> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = states.get_mut(index) else { return Map::new() };
        let (key, new) = match (action, value) {
            ("turn_on", _) => ("state".to_owned(), json!("on")),
            ("turn_off", _) => ("state".to_owned(), json!("off")),
            ("lock", _) => ("state".to_owned(), json!("locked")),
            ("unlock", _) => ("state".to_owned(), json!("unlocked")),
            ("open", _) => ("state".to_owned(), json!("open")),
            ("close", _) => ("state".to_owned(), json!("closed")),
            ("start", _) => ("state".to_owned(), json!("running")),
            ("stop", _) => ("state".to_owned(), json!("stopped")),
            (other, Some(v)) => (other.strip_prefix("set_").unwrap_or(other).to_owned(), json!(v)),
            (other, None) => ("last_action".to_owned(), json!(other)),
        };
        state.insert(key, new);
        state.clone()
    }
}

#[derive(Clone)]
struct Answer {
    topic: String,
    payload: Vec<u8>,
    properties: PublishProperties,
}
