//! Home Assistant MQTT discovery (`[homeassistant] discovery = true`):
//! hearken appears in Home Assistant as one device with its own entities —
//! the last transcript and the last outcome (sensors), each engine's health
//! (binary sensors), the host's CPU and memory use (sensors), and buttons for
//! push-to-talk, confirm and cancel — all with an availability topic that
//! the broker turns `offline` (MQTT will) when the daemon dies. The configs
//! are retained under `<prefix>/<component>/hearken_<site>/<object>/config`;
//! `discovery = false` removes any that a previous run left.
//!
//! The buttons publish on hearken's own control topics
//! (`hearken/<site>/listen`, `…/confirm`), so they go through the same
//! activation and confirmation rules as everything else.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::catalog::topics;
use crate::mqtt::{read_retained, BrokerOptions, MqttError};

/// What hearken publishes about itself: one entity each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    /// The last utterance's words (sensor).
    LastTranscript,
    /// What the last utterance did (sensor): the commands and outcomes, or why none.
    LastOutcome,
    /// The speech engine is up (binary sensor).
    SttEngine,
    /// The intent engine is up (binary sensor).
    IntentEngine,
    /// CPU use in percent (sensor).
    Cpu,
    /// Memory use in percent (sensor).
    Memory,
    /// Push-to-talk (button).
    Listen,
    /// Confirm the pending commands (button).
    Confirm,
    /// Cancel them (button).
    Cancel,
}

impl Entity {
    /// Every entity, in the order the configs are published.
    pub const ALL: [Entity; 9] = [
        Entity::LastTranscript,
        Entity::LastOutcome,
        Entity::SttEngine,
        Entity::IntentEngine,
        Entity::Cpu,
        Entity::Memory,
        Entity::Listen,
        Entity::Confirm,
        Entity::Cancel,
    ];

    /// Its object id in topics and unique ids.
    pub fn object_id(self) -> &'static str {
        match self {
            Entity::LastTranscript => "last_transcript",
            Entity::LastOutcome => "last_outcome",
            Entity::SttEngine => "stt_engine",
            Entity::IntentEngine => "intent_engine",
            Entity::Cpu => "cpu",
            Entity::Memory => "memory",
            Entity::Listen => "listen",
            Entity::Confirm => "confirm",
            Entity::Cancel => "cancel",
        }
    }

    fn component(self) -> &'static str {
        match self {
            Entity::SttEngine | Entity::IntentEngine => "binary_sensor",
            Entity::Listen | Entity::Confirm | Entity::Cancel => "button",
            _ => "sensor",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Entity::LastTranscript => "Last transcript",
            Entity::LastOutcome => "Last outcome",
            Entity::SttEngine => "Speech engine",
            Entity::IntentEngine => "Intent engine",
            Entity::Cpu => "CPU",
            Entity::Memory => "Memory",
            Entity::Listen => "Listen",
            Entity::Confirm => "Confirm",
            Entity::Cancel => "Cancel",
        }
    }
}

/// The availability topic: `online` while the daemon runs, `offline` (the
/// broker's will when the connection drops) otherwise.
pub fn status_topic(site: &str) -> String {
    format!("hearken/{site}/status")
}

/// Where an entity's state is published (sensors and binary sensors).
pub fn state_topic(site: &str, entity: Entity) -> String {
    format!("hearken/{site}/ha/{}", entity.object_id())
}

/// Where an entity's discovery config is retained.
pub fn config_topic(prefix: &str, site: &str, entity: Entity) -> String {
    format!("{prefix}/{}/hearken_{}/{}/config", entity.component(), node_id(site), entity.object_id())
}

/// Home Assistant's node ids allow letters, digits, `_` and `-`; a site name has no other.
fn node_id(site: &str) -> String {
    site.replace('-', "_")
}

/// The discovery config of one entity.
pub fn config(site: &str, entity: Entity) -> Value {
    let node = node_id(site);
    let mut config = json!({
        "name": entity.label(),
        "unique_id": format!("hearken_{node}_{}", entity.object_id()),
        "object_id": format!("hearken_{node}_{}", entity.object_id()),
        "availability_topic": status_topic(site),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [format!("hearken_{node}")],
            "name": format!("hearken {site}"),
            "manufacturer": "hearken",
            "model": "voice control agent",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
    });
    let extra = match entity {
        Entity::LastTranscript | Entity::LastOutcome => {
            json!({"state_topic": state_topic(site, entity), "icon": "mdi:microphone-message"})
        }
        Entity::SttEngine | Entity::IntentEngine => json!({
            "state_topic": state_topic(site, entity),
            "device_class": "running",
            "payload_on": "ON",
            "payload_off": "OFF",
            "entity_category": "diagnostic",
        }),
        Entity::Cpu | Entity::Memory => json!({
            "state_topic": state_topic(site, entity),
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }),
        Entity::Listen => json!({"command_topic": topics::listen(site), "payload_press": "listen"}),
        Entity::Confirm => json!({"command_topic": topics::confirm(site), "payload_press": "confirm"}),
        Entity::Cancel => json!({"command_topic": topics::confirm(site), "payload_press": "cancel"}),
    };
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

enum Message {
    State(Entity, String),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// The running discovery connection. Cheap to clone.
#[derive(Clone)]
pub struct HomeAssistant {
    messages: mpsc::Sender<Message>,
}

impl HomeAssistant {
    /// Connects (the will says `offline`, retained) and publishes, on every
    /// connection, the retained configs, `online`, and the last states.
    pub fn start(broker: &BrokerOptions, site: &str, prefix: &str) -> Result<HomeAssistant, MqttError> {
        let client_id = format!("hearken-ha-{}", hex::encode(rand::random::<[u8; 6]>()));
        let mut options = broker.to_mqtt_options(&client_id)?;
        let status = status_topic(site);
        options.set_last_will(LastWill::new(status.clone(), "offline", QoS::AtLeastOnce, true, None));
        let (client, mut events) = AsyncClient::new(options, 64);
        let (messages, mut inbox) = mpsc::channel(64);
        let (site, prefix) = (site.to_owned(), prefix.to_owned());
        tokio::spawn(async move {
            let mut states: BTreeMap<Entity, String> = BTreeMap::new();
            let mut connected = false;
            loop {
                tokio::select! {
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected = true;
                            for entity in Entity::ALL {
                                let body = config(&site, entity).to_string();
                                let _ = client.try_publish(config_topic(&prefix, &site, entity), QoS::AtLeastOnce, true, body);
                            }
                            let _ = client.try_publish(status.clone(), QoS::AtLeastOnce, true, "online");
                            for (entity, value) in &states {
                                let _ = client.try_publish(state_topic(&site, *entity), QoS::AtLeastOnce, true, value.clone());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            connected = false;
                            tracing::debug!("home assistant connection: {e}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    },
                    message = inbox.recv() => match message {
                        Some(Message::State(entity, value)) => {
                            if states.get(&entity) != Some(&value) {
                                if connected {
                                    let _ = client.try_publish(state_topic(&site, entity), QoS::AtLeastOnce, true, value.clone());
                                }
                                states.insert(entity, value);
                            }
                        }
                        Some(Message::Stop(done)) => {
                            let _ = client.try_publish(status.clone(), QoS::AtLeastOnce, true, "offline");
                            let _ = client.try_disconnect();
                            // Until the disconnect is written (or a second): the offline status goes first.
                            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                                while let Ok(event) = events.poll().await {
                                    if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                                        break;
                                    }
                                }
                            })
                            .await;
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    },
                }
            }
        });
        Ok(HomeAssistant { messages })
    }

    /// Sets an entity's state (published retained when it changes).
    pub fn state(&self, entity: Entity, value: impl Into<String>) {
        let _ = self.messages.try_send(Message::State(entity, value.into()));
    }

    /// Says `offline` and disconnects (a clean stop; the will covers a crash).
    pub async fn stop(&self) {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.messages.send(Message::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// Removes the retained configs a run with discovery left (and its status):
/// what `discovery = false` does at start. Returns how many configs were removed.
pub async fn remove(broker: &BrokerOptions, site: &str, prefix: &str) -> Result<usize, MqttError> {
    let filter = format!("{prefix}/+/hearken_{}/+/config", node_id(site));
    let found = read_retained(broker, &[filter, status_topic(site)], Duration::from_secs(5)).await?;
    let configs = found.keys().filter(|t| t.ends_with("/config")).count();
    if !found.is_empty() {
        let empty: Vec<(String, Vec<u8>)> = found.into_keys().map(|topic| (topic, Vec::new())).collect();
        crate::mqtt::write_retained(broker, &empty, Duration::from_secs(5)).await?;
    }
    Ok(configs)
}
