//! The command engine: publish, match acknowledgements, resolve outcomes.
//!
//! # Rules
//!
//! - Only catalog-valid commands are published ([`CommandLink::send`] checks).
//! - Commands are QoS 1, never retained, carry an MQTT 5 message expiry equal
//!   to their budget (rounded up to whole seconds), and go out on a clean-start
//!   session with no session expiry.
//! - Every connection gets a fresh rumqttc client and event loop. When a
//!   connection is lost, the old event loop is dropped with whatever it had
//!   queued, and commands not yet written to the network are resolved as
//!   `not_sent`: nothing is replayed after a reconnect.
//! - Subscriptions (the response topic and every echo topic) are renewed on
//!   every ConnAck.
//! - A command is `acknowledged` when its device confirms it (matching
//!   correlation data, or an echo with the commanded state that arrives after
//!   the publish and is not a retained message), `rejected` when the device
//!   or broker refuses it, `accepted` when the broker's PUBACK is all a
//!   device with `ack = "broker"` gives, `timeout` when the acknowledgement
//!   owed did not come within budget, and `not_sent` when the command never
//!   reached the network.
//! - Acknowledgements after the budget are reported as [`LateAck`] and never
//!   change the outcome. Unknown correlations, duplicates, malformed payloads
//!   and stale echoes are ignored and counted.
//! - PUBACKs are matched by packet id: rumqttc reports `Outgoing::Publish(pkid)`
//!   in submission order, and this task is the only one submitting QoS 1
//!   publishes, so submission order maps commands to packet ids.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop};
use rumqttc::Outgoing;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{BrokerOptions, MqttError};
use crate::catalog::protocol::{self, AckStatus, Expectation, Outbound};
use crate::catalog::{AckMode, Catalog};
use crate::catalog::{Command, CommandError};

/// How a command ended. Serialized in snake case as in the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The device confirmed the command within budget.
    Acknowledged,
    /// The broker took the command (PUBACK) and the device is one that
    /// reports nothing back (`ack = "broker"`): the most that can be known.
    Accepted,
    /// Written to the network, but the acknowledgement the device owes did
    /// not come within budget ([`Delivery::broker_accepted`] tells whether
    /// the broker at least took it).
    Timeout,
    /// The device or the broker refused the command.
    Rejected,
    /// The command never reached the network (broker down, connection lost, queue past deadline).
    NotSent,
}

impl Outcome {
    /// The contract spelling (`acknowledged`, `not_sent`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acknowledged => "acknowledged",
            Outcome::Accepted => "accepted",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
            Outcome::NotSent => "not_sent",
        }
    }
}

/// The result of sending one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Link-local id, also used in [`LateAck`].
    pub command_id: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// From `send` to the outcome (the acknowledgement, or the budget's end).
    pub latency: Duration,
    /// The state the device reported, when it did.
    pub state: Option<Value>,
    /// Why it was rejected, timed out or not sent.
    pub reason: Option<String>,
    /// Whether the broker acknowledged the publish (PUBACK) before the outcome.
    pub broker_accepted: bool,
}

impl Delivery {
    /// A command that never reached the network, and why.
    pub fn not_sent(reason: impl Into<String>, latency: Duration) -> Delivery {
        Delivery {
            command_id: 0,
            outcome: Outcome::NotSent,
            latency,
            state: None,
            reason: Some(reason.into()),
            broker_accepted: false,
        }
    }
}

/// An acknowledgement that arrived after its command's budget ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct LateAck {
    /// The command's id from its [`Delivery`].
    pub command_id: u64,
    /// From `send` to the late acknowledgement.
    pub latency: Duration,
}

/// Counters for benchmarks, metrics and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Commands written to the network.
    pub published: AtomicU64,
    /// Commands resolved as acknowledged.
    pub acknowledged: AtomicU64,
    /// Acknowledgements after the budget.
    pub late_acks: AtomicU64,
    /// Acknowledgements for a command already acknowledged.
    pub duplicate_acks: AtomicU64,
    /// Responses whose correlation data matches no command we sent.
    pub unknown_correlation: AtomicU64,
    /// Responses that are not valid acknowledgement JSON.
    pub malformed_acks: AtomicU64,
    /// Echoes that confirm no pending command (stale, retained or unrelated).
    pub ignored_echoes: AtomicU64,
    /// Connections established (the first one included).
    pub connections: AtomicU64,
    /// Commands not sent because the in-flight limit was reached.
    pub in_flight_refused: AtomicU64,
}

impl LinkStats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How long a shutdown waits for the broker to take the DISCONNECT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Commands that may wait inside the engine for a free broker slot.
const REQUEST_QUEUE: usize = 1024;

/// How many recently resolved commands are remembered to recognise late and
/// duplicate acknowledgements.
const RECENT_MEMORY: usize = 8192;

/// Handle to a running MQTT link. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct CommandLink {
    /// The catalog commands are checked against; replaced whole by a reload.
    catalog: Arc<std::sync::RwLock<Arc<Catalog>>>,
    /// The site, fixed for the link's life (a reload cannot change it).
    site: String,
    requests: mpsc::Sender<Request>,
    state: watch::Receiver<LinkState>,
    late: broadcast::Sender<LateAck>,
    stats: Arc<LinkStats>,
    url: String,
    client_id: String,
}

#[derive(Debug, Clone, Default)]
struct LinkState {
    connected: bool,
    last_error: Option<String>,
}

enum Request {
    // Boxed: an encoded command is large next to the other requests.
    Send {
        command: Command,
        outbound: Box<Outbound>,
        budget: Duration,
        reply: oneshot::Sender<Delivery>,
    },
    Event {
        topic: String,
        payload: Vec<u8>,
    },
    /// Acknowledgement topics of a reloaded catalog's devices.
    Subscribe {
        topics: Vec<String>,
        done: oneshot::Sender<()>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Commands awaiting their outcome at once, unless told otherwise: those
/// waiting for one of the broker's 256 slots for unacknowledged QoS 1
/// publishes included, as many as the link's request queue holds.
pub const DEFAULT_MAX_IN_FLIGHT: usize = REQUEST_QUEUE;

impl CommandLink {
    /// Starts the link's tasks and begins connecting, with at most
    /// [`DEFAULT_MAX_IN_FLIGHT`] commands awaiting their outcome at once.
    pub fn start(broker: &BrokerOptions, catalog: Arc<Catalog>) -> Result<CommandLink, MqttError> {
        CommandLink::start_bounded(broker, catalog, DEFAULT_MAX_IN_FLIGHT)
    }

    /// Starts the link's tasks and begins connecting. Returns at once; use
    /// [`CommandLink::wait_connected`] to wait for the broker. Must be called
    /// inside a tokio runtime. A command sent while `max_in_flight` others
    /// await their outcome is not sent: a broker or devices that stop
    /// answering cannot make the link hold an unbounded set.
    pub fn start_bounded(
        broker: &BrokerOptions,
        catalog: Arc<Catalog>,
        max_in_flight: usize,
    ) -> Result<CommandLink, MqttError> {
        let client_id = format!("hearken-{}", hex::encode(rand::random::<[u8; 6]>()));
        let options = broker.to_mqtt_options(&client_id)?;
        let response_topic = crate::catalog::topics::responses(&catalog.site, &client_id);
        let mut subscriptions = vec![response_topic.clone()];
        for topic in ack_topics(&catalog) {
            if !subscriptions.contains(&topic) {
                subscriptions.push(topic);
            }
        }
        let (request_tx, request_rx) = mpsc::channel(REQUEST_QUEUE);
        let (wire_tx, wire_rx) = mpsc::channel(REQUEST_QUEUE);
        let (state_tx, state_rx) = watch::channel(LinkState::default());
        let (late_tx, _) = broadcast::channel(256);
        let stats = Arc::new(LinkStats::default());
        tokio::spawn(drive_connections(options, wire_tx));
        let engine = Engine {
            response_topic,
            subscriptions,
            client: None,
            connected: false,
            broker_slots: usize::MAX,
            outstanding: 0,
            queued: VecDeque::new(),
            pending_outbound: HashMap::new(),
            submitted: VecDeque::new(),
            inflight: HashMap::new(),
            max_in_flight,
            by_correlation: HashMap::new(),
            by_echo_topic: HashMap::new(),
            by_pkid: HashMap::new(),
            deadlines: BTreeSet::new(),
            recent: Recent::default(),
            state: state_tx,
            late: late_tx.clone(),
            stats: stats.clone(),
            next_id: 0,
        };
        tokio::spawn(engine.run(request_rx, wire_rx));
        tracing::debug!(%client_id, "MQTT link started");
        Ok(CommandLink {
            site: catalog.site.clone(),
            catalog: Arc::new(std::sync::RwLock::new(catalog)),
            requests: request_tx,
            state: state_rx,
            late: late_tx,
            stats,
            url: broker.url.clone(),
            client_id,
        })
    }

    /// Waits until the broker has accepted a connection, or fails with the
    /// last connection error after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), MqttError> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(timeout, state.wait_for(|s| s.connected)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(MqttError::Stopped),
            Err(_) => Err(MqttError::Unreachable {
                url: self.url.clone(),
                reason: self.state.borrow().last_error.clone().unwrap_or_else(|| "no answer".to_owned()),
            }),
        }
    }

    /// Whether the link is connected right now.
    pub fn is_connected(&self) -> bool {
        self.state.borrow().connected
    }

    /// The MQTT client id (random per link), as the broker logs it.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The catalog this link enforces now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The site's events topic.
    pub fn events_topic(&self) -> String {
        crate::catalog::topics::events(&self.site)
    }

    /// Enforces `catalog` from now on (a reload): its devices' acknowledgement
    /// topics are subscribed first, so that a new device's first answer is
    /// seen. Commands already sent keep their expectations. The caller has
    /// checked that the site is the same.
    pub async fn use_catalog(&self, catalog: Arc<Catalog>) -> Result<(), MqttError> {
        let (done, subscribed) = oneshot::channel();
        let topics = ack_topics(&catalog);
        self.requests.send(Request::Subscribe { topics, done }).await.map_err(|_| MqttError::Stopped)?;
        subscribed.await.map_err(|_| MqttError::Stopped)?;
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = catalog;
        Ok(())
    }

    /// Validates `command` against the catalog, publishes it in its device's
    /// protocol and waits for the outcome within the device's budget. An
    /// invalid command is refused before anything is published.
    pub async fn send(&self, command: &Command) -> Result<Delivery, CommandError> {
        let catalog = self.catalog();
        let device = catalog.check(command)?;
        let correlation = rand::random::<[u8; 16]>();
        let budget = Duration::from_millis(device.budget_ms);
        let started = Instant::now();
        let not_sent = |reason: String| Delivery::not_sent(reason, started.elapsed());
        let mut outbound = match protocol::encode(
            device.protocol,
            &device.topic,
            command,
            device.keys.get(&command.action).map(String::as_str),
            &correlation,
        ) {
            Ok(outbound) => outbound,
            Err(e) => return Ok(not_sent(e.to_string())),
        };
        if device.ack == AckMode::Broker {
            outbound.expect = Expectation::Broker;
        }
        let (reply, answer) = oneshot::channel();
        let request = Request::Send { command: command.clone(), outbound: Box::new(outbound), budget, reply };
        if self.requests.send(request).await.is_err() {
            return Ok(not_sent("the MQTT link has stopped".to_owned()));
        }
        Ok(answer.await.unwrap_or_else(|_| not_sent("the MQTT link has stopped".to_owned())))
    }

    /// Publishes an event (QoS 0, not retained). Events are best effort:
    /// they are dropped while the broker is unreachable.
    pub async fn publish_event(&self, topic: String, payload: Vec<u8>) -> Result<(), MqttError> {
        self.requests.send(Request::Event { topic, payload }).await.map_err(|_| MqttError::Stopped)
    }

    /// Subscribes to acknowledgements that arrive after their budget.
    pub fn late_acks(&self) -> broadcast::Receiver<LateAck> {
        self.late.subscribe()
    }

    /// Live counters.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Disconnects cleanly after queued events are written. In-flight
    /// commands are resolved (not_sent if never written) before this returns.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// What the connection task tells the engine.
enum Wire {
    /// A new connection attempt with its own client; the previous one is gone.
    Session(AsyncClient),
    Event(Box<Event>),
    Lost(String),
}

/// Drives one rumqttc event loop per connection attempt, with jittered
/// exponential backoff between attempts. A dropped event loop takes its
/// queued requests with it: that is what makes replay impossible.
async fn drive_connections(options: rumqttc::v5::MqttOptions, wire: mpsc::Sender<Wire>) {
    let mut failures: u32 = 0;
    loop {
        let (client, mut events): (AsyncClient, EventLoop) = AsyncClient::new(options.clone(), REQUEST_QUEUE);
        if wire.send(Wire::Session(client)).await.is_err() {
            return;
        }
        let mut acks = QuickAcks::default();
        loop {
            match events.poll().await {
                Ok(event) => {
                    let connected = matches!(event, Event::Incoming(Packet::ConnAck(_)));
                    let disconnecting = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                    if connected {
                        failures = 0;
                        acks = QuickAcks::find(&options).await;
                    }
                    if matches!(event, Event::Incoming(_)) {
                        acks.send();
                    }
                    if wire.send(Wire::Event(Box::new(event))).await.is_err() || disconnecting {
                        return;
                    }
                }
                Err(e) => {
                    if wire.send(Wire::Lost(e.to_string())).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        drop(events);
        failures = failures.saturating_add(1);
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// The link's own sockets to the broker, found after each ConnAck, on which
/// every packet read is acknowledged at once: a stock Mosquitto (Nagle on)
/// otherwise holds a device's echo behind its PUBACK until Linux's delayed
/// ACK fires, ~40 ms (see `hearken_quickack`).
#[derive(Default)]
struct QuickAcks {
    sockets: Vec<std::os::fd::RawFd>,
}

impl QuickAcks {
    async fn find(options: &rumqttc::v5::MqttOptions) -> QuickAcks {
        let peers: Vec<std::net::SocketAddr> = match tokio::net::lookup_host(options.broker_address()).await {
            Ok(addresses) => addresses.collect(),
            Err(_) => return QuickAcks::default(),
        };
        QuickAcks { sockets: hearken_quickack::sockets_to(&peers) }
    }

    fn send(&mut self) {
        self.sockets.retain(|&fd| hearken_quickack::quickack(fd));
    }
}

/// Where the catalog's devices answer.
fn ack_topics(catalog: &Catalog) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for device in &catalog.devices {
        for topic in protocol::ack_topics(device.protocol, &device.topic) {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
    }
    topics
}

/// Reconnect delay: 100 ms doubling to 5 s, with ±50 % jitter so that many
/// boxes do not hammer a recovering broker in step.
fn backoff(failures: u32) -> Duration {
    let base_ms = 100u64.saturating_mul(1u64 << failures.min(6).saturating_sub(1)).min(5_000);
    let jitter = rand::random::<f64>() + 0.5;
    Duration::from_millis((base_ms as f64 * jitter) as u64)
}

struct Inflight {
    reply: oneshot::Sender<Delivery>,
    expect: Expectation,
    started: Instant,
    deadline: Instant,
    budget: Duration,
    written: bool,
    accepted: bool,
}

/// Recently resolved commands, to tell late and duplicate acknowledgements
/// from forged ones.
#[derive(Default)]
struct Recent {
    order: VecDeque<u64>,
    entries: HashMap<u64, RecentEntry>,
    by_correlation: HashMap<Vec<u8>, u64>,
}

struct RecentEntry {
    expect: Expectation,
    started: Instant,
    acknowledged: bool,
}

impl Recent {
    fn remember(&mut self, id: u64, entry: RecentEntry) {
        if let Expectation::Correlation(c) = &entry.expect {
            self.by_correlation.insert(c.clone(), id);
        }
        self.entries.insert(id, entry);
        self.order.push_back(id);
        while self.order.len() > RECENT_MEMORY {
            if let Some(old) = self.order.pop_front() {
                if let Some(RecentEntry { expect: Expectation::Correlation(c), .. }) = self.entries.remove(&old) {
                    self.by_correlation.remove(&c);
                }
            }
        }
    }

    /// Marks a recent command acknowledged; returns whether it was late
    /// (first acknowledgement after expiry) with its latency, or `None` for a
    /// duplicate.
    fn acknowledge(&mut self, id: u64) -> Option<Duration> {
        let entry = self.entries.get_mut(&id)?;
        if entry.acknowledged {
            return None;
        }
        entry.acknowledged = true;
        Some(entry.started.elapsed())
    }
}

struct Engine {
    response_topic: String,
    subscriptions: Vec<String>,
    client: Option<AsyncClient>,
    connected: bool,
    /// The broker's Receive Maximum: QoS 1 publishes allowed without PUBACK.
    broker_slots: usize,
    /// Publishes written and not yet PUBACKed.
    outstanding: usize,
    /// Commands waiting for a broker slot; cancellable, unlike rumqttc's queue.
    queued: VecDeque<u64>,
    /// What to publish for each queued command.
    pending_outbound: HashMap<u64, (Outbound, Duration)>,
    /// Commands handed to rumqttc, waiting for their `Outgoing::Publish(pkid)`.
    submitted: VecDeque<u64>,
    inflight: HashMap<u64, Inflight>,
    /// The most entries `inflight` may hold.
    max_in_flight: usize,
    by_correlation: HashMap<Vec<u8>, u64>,
    by_echo_topic: HashMap<String, VecDeque<u64>>,
    by_pkid: HashMap<u16, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    recent: Recent,
    state: watch::Sender<LinkState>,
    late: broadcast::Sender<LateAck>,
    stats: Arc<LinkStats>,
    next_id: u64,
}

impl Engine {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>, mut wire: mpsc::Receiver<Wire>) {
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut give_up_at: Option<Instant> = None;
        loop {
            let next_deadline = self.deadlines.first().map(|(at, _)| *at);
            tokio::select! {
                biased;
                item = wire.recv() => match item {
                    Some(item) => {
                        let gone = match &item {
                            Wire::Lost(_) => true,
                            Wire::Event(event) => matches!(**event, Event::Outgoing(Outgoing::Disconnect)),
                            Wire::Session(_) => false,
                        };
                        self.on_wire(item);
                        if gone && shutdown.is_some() {
                            break;
                        }
                    }
                    None => break,
                },
                () = sleep_until(give_up_at), if give_up_at.is_some() => break,
                request = requests.recv(), if shutdown.is_none() => match request {
                    Some(Request::Send { command, outbound, budget, reply }) => self.on_send(command, *outbound, budget, reply),
                    Some(Request::Event { topic, payload }) => self.on_event(topic, payload),
                    Some(Request::Subscribe { topics, done }) => {
                        self.on_subscribe(topics);
                        let _ = done.send(());
                    }
                    Some(Request::Shutdown { done }) => {
                        shutdown = Some(done);
                        give_up_at = Some(Instant::now() + SHUTDOWN_GRACE);
                        self.begin_shutdown();
                        if self.client.is_none() {
                            break;
                        }
                    }
                    None => {
                        self.begin_shutdown();
                        if self.client.is_none() {
                            break;
                        }
                    }
                },
                () = sleep_until(next_deadline), if next_deadline.is_some() => self.expire(Instant::now()),
            }
        }
        let ids: Vec<u64> = self.inflight.keys().copied().collect();
        for id in ids {
            self.resolve(id, Outcome::NotSent, None, Some("the MQTT link shut down".to_owned()));
        }
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
    }

    fn begin_shutdown(&mut self) {
        // Give written commands no more time; queued ones are never sent.
        let now = Instant::now();
        for (deadline, id) in std::mem::take(&mut self.deadlines) {
            self.deadlines.insert((deadline.min(now), id));
        }
        self.expire(now);
        match &self.client {
            Some(client) if self.connected => {
                let _ = client.try_disconnect();
            }
            _ => self.client = None,
        }
    }

    fn on_send(&mut self, command: Command, outbound: Outbound, budget: Duration, reply: oneshot::Sender<Delivery>) {
        let started = Instant::now();
        self.next_id += 1;
        let id = self.next_id;
        if !self.connected || self.client.is_none() {
            let _ = reply.send(Delivery {
                command_id: id,
                outcome: Outcome::NotSent,
                latency: started.elapsed(),
                state: None,
                reason: Some("not connected to the broker".to_owned()),
                broker_accepted: false,
            });
            return;
        }
        if self.inflight.len() >= self.max_in_flight {
            self.stats.in_flight_refused.fetch_add(1, Ordering::Relaxed);
            let reason = format!("in-flight limit: {} commands already await their outcome", self.max_in_flight);
            let _ = reply.send(Delivery::not_sent(reason, started.elapsed()));
            return;
        }
        tracing::debug!(id, device = %command.device, action = %command.action, topic = %outbound.topic, "publishing");
        let deadline = started + budget;
        match &outbound.expect {
            Expectation::Correlation(c) => {
                self.by_correlation.insert(c.clone(), id);
            }
            Expectation::Echo { topic, .. } => self.by_echo_topic.entry(topic.clone()).or_default().push_back(id),
            Expectation::Broker => {}
        }
        self.inflight.insert(
            id,
            Inflight {
                reply,
                expect: outbound.expect.clone(),
                started,
                deadline,
                budget,
                written: false,
                accepted: false,
            },
        );
        self.deadlines.insert((deadline, id));
        self.pending_outbound.insert(id, (outbound, budget));
        self.queued.push_back(id);
        self.submit_queued();
    }

    fn submit_queued(&mut self) {
        while self.outstanding + self.submitted.len() < self.broker_slots {
            let Some(id) = self.queued.pop_front() else { return };
            let Some((outbound, budget)) = self.pending_outbound.remove(&id) else { continue };
            let Some(client) = &self.client else { return };
            let mut properties = PublishProperties {
                message_expiry_interval: Some(budget.as_millis().div_ceil(1000).max(1) as u32),
                ..PublishProperties::default()
            };
            if let Expectation::Correlation(c) = &outbound.expect {
                properties.response_topic = Some(self.response_topic.clone());
                properties.correlation_data = Some(Bytes::from(c.clone()));
            }
            match client.try_publish_with_properties(
                outbound.topic,
                QoS::AtLeastOnce,
                false,
                outbound.payload,
                properties,
            ) {
                Ok(()) => self.submitted.push_back(id),
                Err(e) => self.resolve(
                    id,
                    Outcome::NotSent,
                    None,
                    Some(format!("MQTT client queue refused the command: {e}")),
                ),
            }
        }
    }

    /// Adds acknowledgement topics: subscribed now when connected, and on every ConnAck after.
    fn on_subscribe(&mut self, topics: Vec<String>) {
        let new: Vec<String> = topics.into_iter().filter(|t| !self.subscriptions.contains(t)).collect();
        if new.is_empty() {
            return;
        }
        self.subscriptions.extend(new.iter().cloned());
        if let (true, Some(client)) = (self.connected, &self.client) {
            let filters = new.into_iter().map(|t| rumqttc::v5::mqttbytes::v5::Filter::new(t, QoS::AtLeastOnce));
            if let Err(e) = client.try_subscribe_many(filters) {
                tracing::error!("cannot subscribe to the new acknowledgement topics: {e}");
            }
        }
    }

    fn on_event(&mut self, topic: String, payload: Vec<u8>) {
        if let (true, Some(client)) = (self.connected, &self.client) {
            if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, payload) {
                tracing::warn!("event dropped: {e}");
            }
        }
    }

    fn on_wire(&mut self, item: Wire) {
        match item {
            Wire::Session(client) => self.client = Some(client),
            Wire::Lost(reason) => self.on_lost(reason),
            Wire::Event(event) => self.on_mqtt_event(*event),
        }
    }

    fn on_mqtt_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(connack)) => {
                self.connected = true;
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                self.broker_slots =
                    connack.properties.as_ref().and_then(|p| p.receive_max).map_or(usize::from(u16::MAX), usize::from);
                self.outstanding = 0;
                if let Some(client) = &self.client {
                    let filters = self
                        .subscriptions
                        .iter()
                        .map(|t| rumqttc::v5::mqttbytes::v5::Filter::new(t.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::error!("cannot subscribe to acknowledgement topics: {e}");
                    }
                }
                self.state.send_replace(LinkState { connected: true, last_error: None });
                tracing::info!("connected to broker");
            }
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if let Some(id) = self.submitted.pop_front() {
                    self.outstanding += 1;
                    self.stats.published.fetch_add(1, Ordering::Relaxed);
                    if let Some(entry) = self.inflight.get_mut(&id) {
                        entry.written = true;
                        self.by_pkid.insert(pkid, id);
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                if let Some(id) = self.by_pkid.remove(&ack.pkid) {
                    match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                            let broker_only = match self.inflight.get_mut(&id) {
                                Some(entry) => {
                                    entry.accepted = true;
                                    entry.expect == Expectation::Broker
                                }
                                None => false,
                            };
                            if broker_only {
                                self.resolve(id, Outcome::Accepted, None, None);
                            }
                        }
                        reason => {
                            self.resolve(id, Outcome::Rejected, None, Some(format!("broker refused: {reason:?}")))
                        }
                    }
                }
                self.submit_queued();
            }
            Event::Incoming(Packet::Publish(publish)) => self.on_publish(publish),
            _ => {}
        }
    }

    fn on_lost(&mut self, reason: String) {
        if self.connected {
            tracing::warn!("broker connection lost: {reason}");
        }
        self.connected = false;
        self.client = None;
        self.outstanding = 0;
        self.state.send_replace(LinkState { connected: false, last_error: Some(reason) });
        let unwritten: Vec<u64> = self.submitted.drain(..).chain(self.queued.drain(..)).collect();
        for id in unwritten {
            self.resolve(
                id,
                Outcome::NotSent,
                None,
                Some("broker connection lost before the command was written".to_owned()),
            );
        }
        self.by_pkid.clear();
    }

    fn on_publish(&mut self, publish: Publish) {
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        if topic == self.response_topic {
            self.on_response(&publish);
        } else {
            self.on_echo(&topic, &publish);
        }
    }

    fn on_response(&mut self, publish: &Publish) {
        let Some(correlation) = publish.properties.as_ref().and_then(|p| p.correlation_data.as_ref()) else {
            self.stats.unknown_correlation.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let correlation = correlation.to_vec();
        let Some(ack) = protocol::parse_hearken_ack(&publish.payload) else {
            tracing::warn!("malformed acknowledgement ignored");
            self.stats.malformed_acks.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(id) = self.by_correlation.get(&correlation).copied() {
            match ack.status {
                AckStatus::Ok => self.resolve(id, Outcome::Acknowledged, ack.state, None),
                AckStatus::Error => self.resolve(
                    id,
                    Outcome::Rejected,
                    ack.state,
                    Some(ack.error.unwrap_or_else(|| "device refused the command".to_owned())),
                ),
            }
        } else if let Some(id) = self.recent.by_correlation.get(&correlation).copied() {
            self.on_recent_ack(id);
        } else {
            tracing::warn!("acknowledgement with unknown correlation ignored");
            self.stats.unknown_correlation.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_echo(&mut self, topic: &str, publish: &Publish) {
        if publish.retain {
            // A retained state predates every command we sent on this connection.
            self.stats.ignored_echoes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let candidates = self.by_echo_topic.get(topic).cloned().unwrap_or_default();
        for id in candidates {
            let Some(entry) = self.inflight.get(&id) else { continue };
            if !entry.written {
                continue;
            }
            if let Expectation::Echo { key, value, .. } = &entry.expect {
                if let Some(state) = protocol::echo_confirms(&publish.payload, key, value) {
                    self.resolve(id, Outcome::Acknowledged, Some(state), None);
                    return;
                }
            }
        }
        let late = self.recent.order.iter().rev().copied().find(|id| {
            self.recent.entries.get(id).is_some_and(|e| {
                !e.acknowledged
                    && matches!(&e.expect, Expectation::Echo { topic: t, key, value }
                        if t == topic && protocol::echo_confirms(&publish.payload, key, value).is_some())
            })
        });
        match late {
            Some(id) => self.on_recent_ack(id),
            None => {
                self.stats.ignored_echoes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_recent_ack(&mut self, id: u64) {
        match self.recent.acknowledge(id) {
            Some(latency) => {
                self.stats.late_acks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(id, latency_ms = latency.as_millis() as u64, "late acknowledgement");
                let _ = self.late.send(LateAck { command_id: id, latency });
            }
            None => {
                self.stats.duplicate_acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(entry) = self.inflight.get(&id) else { continue };
            let (outcome, reason) = if entry.written {
                let broker = if entry.accepted { "the broker accepted it" } else { "not even the broker confirmed it" };
                let owed = if entry.expect == Expectation::Broker { "broker" } else { "device" };
                (
                    Outcome::Timeout,
                    Some(format!("no {owed} acknowledgement within {} ms ({broker})", entry.budget.as_millis())),
                )
            } else {
                // Still in our own queue (never handed to rumqttc) or handed over
                // but not written: either way it must not go out late.
                (Outcome::NotSent, Some("no free broker slot before the deadline".to_owned()))
            };
            self.queued.retain(|q| *q != id);
            self.resolve(id, outcome, None, reason);
        }
    }

    fn resolve(&mut self, id: u64, outcome: Outcome, state: Option<Value>, reason: Option<String>) {
        let Some(entry) = self.inflight.remove(&id) else { return };
        self.pending_outbound.remove(&id);
        self.deadlines.remove(&(entry.deadline, id));
        match &entry.expect {
            Expectation::Broker => {}
            Expectation::Correlation(c) => {
                self.by_correlation.remove(c);
            }
            Expectation::Echo { topic, .. } => {
                if let Some(queue) = self.by_echo_topic.get_mut(topic) {
                    queue.retain(|q| *q != id);
                    if queue.is_empty() {
                        self.by_echo_topic.remove(topic);
                    }
                }
            }
        }
        if outcome == Outcome::Acknowledged {
            self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        let latency = entry.started.elapsed();
        self.recent.remember(
            id,
            RecentEntry {
                expect: entry.expect,
                started: entry.started,
                acknowledged: matches!(outcome, Outcome::Acknowledged | Outcome::Rejected),
            },
        );
        let _ = entry.reply.send(Delivery {
            command_id: id,
            outcome,
            latency,
            state,
            reason,
            broker_accepted: entry.accepted,
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for failures in 1..20 {
            let d = backoff(failures);
            assert!(d <= Duration::from_millis(7_500), "{d:?}");
            assert!(d >= Duration::from_millis(50), "{d:?}");
        }
        // Jitter is ×0.5–1.5: the first retry stays under 150 ms, later ones at least 1.6 s.
        assert!(backoff(1) <= Duration::from_millis(150));
        assert!(backoff(10) >= Duration::from_millis(1_600));
    }
}
