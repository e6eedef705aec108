//! Reading what a broker holds retained on a few topics, once: how
//! `hearken devices import` reads Zigbee2MQTT's `bridge/devices` and
//! Tasmota's discovery messages without keeping a connection.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::time::Instant;

use crate::mqtt::{BrokerOptions, MqttError};

/// How long to wait after the subscription is acknowledged for retained
/// messages still on their way (a broker sends them right after the SubAck).
const SETTLE: Duration = Duration::from_millis(500);

/// The largest retained message read (Zigbee2MQTT's device list of a few
/// hundred devices is a few megabytes).
pub const MAX_RETAINED_BYTES: u32 = 32 * 1024 * 1024;

/// Subscribes to `filters` (wildcards allowed), gathers the retained messages
/// the broker sends, and returns them by topic. `timeout` bounds the
/// connection; once subscribed, the read ends [`SETTLE`] after the last
/// message. A topic with nothing retained is simply absent.
pub async fn read_retained(
    broker: &BrokerOptions,
    filters: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<u8>>, MqttError> {
    let client_id = format!("hearken-import-{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut options = broker.to_mqtt_options(&client_id)?;
    // `bridge/devices` of a large network is megabytes.
    options.set_max_packet_size(Some(MAX_RETAINED_BYTES));
    let (client, mut events) = AsyncClient::new(options, 64);
    let deadline = Instant::now() + timeout;
    let mut subscribed: Option<Instant> = None;
    let mut found = BTreeMap::new();
    loop {
        let until = subscribed.map_or(deadline, |at| at + SETTLE);
        let event = match tokio::time::timeout_at(until, events.poll()).await {
            Err(_) if subscribed.is_some() => break,
            Err(_) => {
                return Err(MqttError::Unreachable {
                    url: broker.url.clone(),
                    reason: format!("no subscription within {} ms", timeout.as_millis()),
                })
            }
            Ok(event) => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let wanted = filters.iter().map(|f| Filter::new(f.clone(), QoS::AtLeastOnce)).collect::<Vec<_>>();
                client.try_subscribe_many(wanted).map_err(|e| MqttError::Unreachable {
                    url: broker.url.clone(),
                    reason: format!("cannot subscribe: {e}"),
                })?;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => subscribed = Some(Instant::now()),
            Ok(Event::Incoming(Packet::Publish(publish))) if publish.retain => {
                found.insert(String::from_utf8_lossy(&publish.topic).into_owned(), publish.payload.to_vec());
                if let Some(at) = subscribed.as_mut() {
                    *at = Instant::now();
                }
            }
            Ok(_) => {}
            Err(e) => {
                return Err(MqttError::Unreachable { url: broker.url.clone(), reason: e.to_string() });
            }
        }
    }
    let _ = client.try_disconnect();
    Ok(found)
}

/// Publishes `messages` retained (QoS 1; an empty payload deletes what is
/// retained on its topic) and returns once the broker has acknowledged every
/// one, within `timeout`.
pub async fn write_retained(
    broker: &BrokerOptions,
    messages: &[(String, Vec<u8>)],
    timeout: Duration,
) -> Result<(), MqttError> {
    let client_id = format!("hearken-retain-{}", hex::encode(rand::random::<[u8; 6]>()));
    let options = broker.to_mqtt_options(&client_id)?;
    let (client, mut events) = AsyncClient::new(options, messages.len().max(1) + 8);
    let unreachable = |reason: String| MqttError::Unreachable { url: broker.url.clone(), reason };
    let mut acknowledged = 0;
    let written = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for (topic, payload) in messages {
                        client
                            .try_publish(topic.clone(), QoS::AtLeastOnce, true, payload.clone())
                            .map_err(|e| unreachable(format!("cannot publish: {e}")))?;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acknowledged += 1;
                    if acknowledged == messages.len() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(unreachable(e.to_string())),
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    written.unwrap_or_else(|_| {
        Err(unreachable(format!("not every retained message acknowledged within {} ms", timeout.as_millis())))
    })
}
