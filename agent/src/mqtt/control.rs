//! Control messages over MQTT: push-to-talk triggers on `hearken/<site>/listen`,
//! confirmations on `hearken/<site>/confirm`, text requests on
//! `hearken/<site>/text` and catalog reloads on `hearken/<site>/catalog/reload`. A connection of its own
//! (clean start, nothing retained is acted on), so the command link stays
//! publish-and-acknowledge only.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::mpsc;

use crate::mqtt::{BrokerOptions, MqttError};

/// What arrived on a control topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Accept the next utterance (push-to-talk).
    Listen,
    /// A request as text, from `hearken/<site>/text`.
    Text {
        /// The request.
        text: String,
        /// The sender's id for it, echoed in the `text_reply` event.
        request_id: Option<String>,
        /// The speaker's room, when the sender knows it.
        area: Option<String>,
    },
    /// Read the catalog file again (`hearken/<site>/catalog/reload`, or SIGHUP).
    Reload {
        /// What asked: `mqtt` or `sighup`.
        trigger: &'static str,
    },
    /// Confirm (`true`) or cancel (`false`) the pending confirmation `id`
    /// (`None`: whichever is pending).
    Confirm {
        /// The confirmation id from the `confirmation_needed` event.
        id: Option<u64>,
        /// Confirm or cancel.
        confirm: bool,
    },
}

/// The trigger topic of a site.
pub fn listen_topic(site: &str) -> String {
    crate::catalog::topics::listen(site)
}

/// The confirmation topic of a site.
pub fn confirm_topic(site: &str) -> String {
    crate::catalog::topics::confirm(site)
}

/// The text request topic of a site.
pub fn text_topic(site: &str) -> String {
    crate::catalog::topics::text(site)
}

/// Parses a text request: the request itself as UTF-8, or
/// `{"text": "…", "id": "…", "area": "…"}` (`id` and `area` optional).
/// `None` for an empty request or a payload that is neither.
pub fn parse_text_request(payload: &[u8]) -> Option<Control> {
    let raw = std::str::from_utf8(payload).ok()?.trim();
    let control = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(fields)) => Control::Text {
            text: fields.get("text")?.as_str()?.trim().to_owned(),
            request_id: fields.get("id").and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            area: fields.get("area").and_then(|v| v.as_str()).map(str::to_owned),
        },
        _ => Control::Text { text: raw.to_owned(), request_id: None, area: None },
    };
    match &control {
        Control::Text { text, .. } if text.is_empty() => None,
        _ => Some(control),
    }
}

/// Parses a confirmation payload: `confirm` / `cancel`, or
/// `{"id": N, "decision": "confirm" | "cancel"}`.
pub fn parse_confirmation(payload: &[u8]) -> Option<Control> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let decision = |d: &str| match d {
        "confirm" | "yes" => Some(true),
        "cancel" | "no" => Some(false),
        _ => None,
    };
    if let Some(confirm) = decision(&text.to_lowercase()) {
        return Some(Control::Confirm { id: None, confirm });
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let confirm = decision(value["decision"].as_str()?)?;
    Some(Control::Confirm { id: value["id"].as_u64(), confirm })
}

/// Subscribes to the site's control topics and forwards what arrives until
/// the receiver is dropped. Reconnects on its own.
pub fn start(broker: &BrokerOptions, site: &str, sink: mpsc::Sender<Control>) -> Result<(), MqttError> {
    let client_id = format!("hearken-control-{}", hex::encode(rand::random::<[u8; 6]>()));
    let options = broker.to_mqtt_options(&client_id)?;
    let (client, mut events) = AsyncClient::new(options, 64);
    let listen = listen_topic(site);
    let confirm = confirm_topic(site);
    let text = text_topic(site);
    let reload = crate::catalog::topics::catalog_reload(site);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let filters = vec![
                        Filter::new(listen.clone(), QoS::AtLeastOnce),
                        Filter::new(confirm.clone(), QoS::AtLeastOnce),
                        Filter::new(text.clone(), QoS::AtLeastOnce),
                        Filter::new(reload.clone(), QoS::AtLeastOnce),
                    ];
                    if let Err(e) = client.try_subscribe_many(filters) {
                        tracing::warn!("cannot subscribe to control topics: {e}");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    // A retained trigger or confirmation is stale by definition.
                    if publish.retain {
                        continue;
                    }
                    let topic = String::from_utf8_lossy(&publish.topic);
                    let control = if topic == listen {
                        Some(Control::Listen)
                    } else if topic == text {
                        parse_text_request(&publish.payload)
                    } else if topic == reload {
                        Some(Control::Reload { trigger: "mqtt" })
                    } else {
                        parse_confirmation(&publish.payload)
                    };
                    match control {
                        Some(control) => {
                            if sink.send(control).await.is_err() {
                                return;
                            }
                        }
                        None => tracing::warn!(%topic, "unreadable control message ignored"),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if sink.is_closed() {
                        return;
                    }
                    tracing::debug!("control connection: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn text_request_payloads() {
        assert_eq!(
            parse_text_request(b" turn on the porch light \n"),
            Some(Control::Text { text: "turn on the porch light".into(), request_id: None, area: None })
        );
        assert_eq!(
            parse_text_request(br#"{"text": "lights off", "id": 7, "area": "kitchen"}"#),
            Some(Control::Text {
                text: "lights off".into(),
                request_id: Some("7".into()),
                area: Some("kitchen".into())
            })
        );
        assert_eq!(parse_text_request(b"  "), None);
        assert_eq!(parse_text_request(br#"{"id": "x"}"#), None);
        assert_eq!(parse_text_request(b"\xff\xfe"), None);
    }

    #[test]
    fn confirmation_payloads() {
        assert_eq!(parse_confirmation(b"confirm"), Some(Control::Confirm { id: None, confirm: true }));
        assert_eq!(parse_confirmation(b" Cancel\n"), Some(Control::Confirm { id: None, confirm: false }));
        assert_eq!(
            parse_confirmation(br#"{"id": 3, "decision": "confirm"}"#),
            Some(Control::Confirm { id: Some(3), confirm: true })
        );
        assert_eq!(parse_confirmation(br#"{"id": 3, "decision": "maybe"}"#), None);
        assert_eq!(parse_confirmation(b"\xff"), None);
    }
}
