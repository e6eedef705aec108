//! Following Zigbee2MQTT (`[zigbee2mqtt] follow = true`): the catalog file is
//! written from Zigbee2MQTT's retained device list, the overlay applied, and
//! reloaded whenever the list changes — a device joining, leaving or being
//! renamed reaches the running daemon within a second, through the same
//! checked reload as SIGHUP (a list that gives an invalid catalog is refused
//! and the old catalog keeps serving).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::mpsc;

use crate::catalog::import::{self, Overlay};
use crate::mqtt::control::Control;
use crate::mqtt::{BrokerOptions, MqttError};

/// Zigbee2MQTT publishes `bridge/devices` again for every change, sometimes
/// several times in a row (an interview): wait this long for the last one.
const SETTLE: Duration = Duration::from_millis(300);

/// What the follower needs.
pub(crate) struct Follow {
    /// Zigbee2MQTT's base topic.
    pub base_topic: String,
    /// The hand-written overlay, read again for every change.
    pub overlay: Option<PathBuf>,
    /// The catalog file it writes (the daemon's `catalog`).
    pub catalog: PathBuf,
    /// The site the catalog is for.
    pub site: String,
    /// The broker's URL, named in the catalog's header as `hearken devices import` names it.
    pub broker_url: String,
}

/// Subscribes to the device list and, for every change, writes the catalog
/// and asks for a reload (trigger `zigbee2mqtt`).
pub(crate) fn start(broker: &BrokerOptions, follow: Follow, control: mpsc::Sender<Control>) -> Result<(), MqttError> {
    let client_id = format!("hearken-z2m-{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut options = broker.to_mqtt_options(&client_id)?;
    options.set_max_packet_size(Some(crate::mqtt::MAX_RETAINED_BYTES));
    let (client, mut events) = AsyncClient::new(options, 16);
    let devices_topic = format!("{}/bridge/devices", follow.base_topic);
    let groups_topic = format!("{}/bridge/groups", follow.base_topic);
    tokio::spawn(async move {
        let (mut devices, mut groups): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
        let mut changed_at: Option<tokio::time::Instant> = None;
        loop {
            let settle = async {
                match changed_at {
                    Some(at) => tokio::time::sleep_until(at + SETTLE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let filters = [&devices_topic, &groups_topic].map(|t| Filter::new(t.clone(), QoS::AtLeastOnce));
                        if let Err(e) = client.try_subscribe_many(filters) {
                            tracing::warn!("cannot subscribe to Zigbee2MQTT's device list: {e}");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let topic = String::from_utf8_lossy(&publish.topic);
                        if topic == devices_topic {
                            devices = Some(publish.payload.to_vec());
                        } else if topic == groups_topic {
                            groups = Some(publish.payload.to_vec());
                        }
                        changed_at = Some(tokio::time::Instant::now());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if control.is_closed() {
                            return;
                        }
                        tracing::debug!("Zigbee2MQTT follower connection: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                () = settle => {
                    changed_at = None;
                    let Some(list) = &devices else { continue };
                    match write_catalog(&follow, list, groups.as_deref()) {
                        Ok(false) => {}
                        Ok(true) => {
                            if control.send(Control::Reload { trigger: "zigbee2mqtt" }).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "Zigbee2MQTT's device list gives no catalog; the old one keeps serving"),
                    }
                }
            }
        }
    });
    Ok(())
}

/// Writes the catalog for the device list (atomically: a reader never sees
/// half a file); `false` when it is what the file already holds.
fn write_catalog(follow: &Follow, devices: &[u8], groups: Option<&[u8]>) -> Result<bool, String> {
    let found = import::z2m::import(devices, groups, &follow.base_topic).map_err(|e| e.to_string())?;
    let overlay = match &follow.overlay {
        Some(path) => Overlay::read(path).map_err(|e| e.to_string())?,
        None => Overlay::default(),
    };
    let source = format!("{} {}/bridge/devices", follow.broker_url, follow.base_topic);
    let text = import::write_catalog(&follow.site, &found, &overlay, &source);
    if std::fs::read_to_string(&follow.catalog).is_ok_and(|now| now == text) {
        return Ok(false);
    }
    replace_file(&follow.catalog, &text).map_err(|e| format!("cannot write {}: {e}", follow.catalog.display()))?;
    Ok(true)
}

fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let partial = path.with_extension("toml.partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}
