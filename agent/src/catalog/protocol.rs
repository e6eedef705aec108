//! How a command is encoded for a device's MQTT protocol and how its
//! acknowledgement is recognised.
//!
//! This module is pure (no I/O) so that the encoding and matching rules can be
//! unit-tested and fuzzed without a broker. The MQTT engine uses it to build
//! outbound messages and to decide whether an incoming message acknowledges a
//! pending command.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::command::Command;

/// The MQTT dialects hearken speaks. Each knows its command topic, payload
/// and acknowledgement, so a catalog can mix native hearken devices with
/// Zigbee2MQTT and Tasmota ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT 5 request/response: `<topic>/set` with Response Topic and
    /// Correlation Data; the device answers with the same correlation.
    Hearken,
    /// Zigbee2MQTT: `<topic>/set` JSON, acknowledged by the state echo on `<topic>`.
    Zigbee2mqtt,
    /// Tasmota: `cmnd/<topic>/<Command>`, acknowledged on `stat/<topic>/RESULT`.
    Tasmota,
}

impl Protocol {
    /// Every protocol, for error messages that list what is allowed.
    pub const ALL: [Protocol; 3] = [Protocol::Hearken, Protocol::Zigbee2mqtt, Protocol::Tasmota];

    /// Parses the catalog spelling of a protocol name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "hearken" => Some(Protocol::Hearken),
            "zigbee2mqtt" => Some(Protocol::Zigbee2mqtt),
            "tasmota" => Some(Protocol::Tasmota),
            _ => None,
        }
    }

    /// The catalog spelling, used in topics, audit records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hearken => "hearken",
            Protocol::Zigbee2mqtt => "zigbee2mqtt",
            Protocol::Tasmota => "tasmota",
        }
    }

    /// Whether this protocol can encode `action` (and whether it then takes a
    /// value). `None` means the protocol has no encoding for the action, so a
    /// catalog that lists it is rejected rather than failing at run time.
    /// The hearken protocol carries any action verbatim.
    pub fn action_takes_value(self, action: &str) -> Option<bool> {
        match self {
            Protocol::Hearken => Some(action.starts_with("set_")),
            Protocol::Zigbee2mqtt => zigbee2mqtt_mapping(action).map(|m| m.takes_value),
            Protocol::Tasmota => tasmota_mapping(action).map(|m| m.takes_value),
        }
    }

    /// Actions this protocol can encode, for error messages. `None` for the
    /// hearken protocol, which accepts any action.
    pub fn supported_actions(self) -> Option<Vec<&'static str>> {
        match self {
            Protocol::Hearken => None,
            Protocol::Zigbee2mqtt => Some(ZIGBEE2MQTT.iter().map(|m| m.action).collect()),
            Protocol::Tasmota => Some(TASMOTA.iter().map(|m| m.action).collect()),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of a protocol's action table: how an action is written and how
/// the device's confirmation of it looks.
struct ActionMapping {
    action: &'static str,
    /// JSON key (zigbee2mqtt) or command name (tasmota).
    key: &'static str,
    /// Fixed value for actions without a parameter.
    fixed: Option<&'static str>,
    takes_value: bool,
}

const fn fixed(action: &'static str, key: &'static str, value: &'static str) -> ActionMapping {
    ActionMapping { action, key, fixed: Some(value), takes_value: false }
}

const fn valued(action: &'static str, key: &'static str) -> ActionMapping {
    ActionMapping { action, key, fixed: None, takes_value: true }
}

/// Zigbee2MQTT `/set` payload keys. Values are sent in the device's native
/// scale (brightness 0–254, colour temperature in mired): the catalog's
/// `params` range must use that scale.
const ZIGBEE2MQTT: [ActionMapping; 10] = [
    fixed("turn_on", "state", "ON"),
    fixed("turn_off", "state", "OFF"),
    fixed("lock", "state", "LOCK"),
    fixed("unlock", "state", "UNLOCK"),
    fixed("open", "state", "OPEN"),
    fixed("close", "state", "CLOSE"),
    valued("set_brightness", "brightness"),
    valued("set_color_temp", "color_temp"),
    valued("set_position", "position"),
    valued("set_temperature", "occupied_heating_setpoint"),
];

/// Tasmota commands; the RESULT message carries the same key.
const TASMOTA: [ActionMapping; 5] = [
    fixed("turn_on", "POWER", "ON"),
    fixed("turn_off", "POWER", "OFF"),
    valued("set_brightness", "Dimmer"),
    valued("set_color_temp", "CT"),
    valued("set_speed", "FanSpeed"),
];

fn zigbee2mqtt_mapping(action: &str) -> Option<&'static ActionMapping> {
    ZIGBEE2MQTT.iter().find(|m| m.action == action)
}

fn tasmota_mapping(action: &str) -> Option<&'static ActionMapping> {
    TASMOTA.iter().find(|m| m.action == action)
}

/// Errors from encoding a command for the wire. Catalog validation rules them
/// out in practice; they exist so that encoding never panics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The protocol has no encoding for the action.
    #[error("protocol {protocol} cannot encode action '{action}'")]
    UnsupportedAction {
        /// The device's protocol.
        protocol: Protocol,
        /// The action that has no encoding.
        action: String,
    },
    /// A value-taking action arrived without its value.
    #[error("action '{action}' needs a value")]
    MissingValue {
        /// The action missing its value.
        action: String,
    },
}

/// A command ready for the wire: where it goes, what it says, and how its
/// acknowledgement will be recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Topic the command is published to.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// How the device confirms this command.
    pub expect: Expectation,
}

/// What counts as the device's acknowledgement of one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// hearken protocol: a message on our response topic carrying this
    /// correlation data.
    Correlation(Vec<u8>),
    /// The broker's PUBACK is all there is (devices with `ack = "broker"`,
    /// which report nothing back).
    Broker,
    /// zigbee2mqtt/tasmota: a JSON object on `topic` whose `key` equals
    /// `value`, published after the command went out.
    Echo {
        /// Topic the device reports its state on.
        topic: String,
        /// The state key that reflects the command.
        key: String,
        /// The value that key must have.
        value: Value,
    },
}

/// Encodes `command` for a device reached through `protocol` at base topic
/// `topic`. `key` replaces the protocol's payload key for the action when the
/// device names its own (the catalog's `keys`); `correlation` is used only by
/// the hearken protocol.
pub fn encode(
    protocol: Protocol,
    topic: &str,
    command: &Command,
    key: Option<&str>,
    correlation: &[u8],
) -> Result<Outbound, ProtocolError> {
    match protocol {
        Protocol::Hearken => {
            let payload = serde_json::to_vec(command).unwrap_or_default();
            Ok(Outbound {
                topic: format!("{topic}/set"),
                payload,
                expect: Expectation::Correlation(correlation.to_vec()),
            })
        }
        Protocol::Zigbee2mqtt => {
            let mapping = zigbee2mqtt_mapping(&command.action).ok_or_else(|| unsupported(protocol, command))?;
            let value = mapping_value(mapping, command)?;
            let key = key.unwrap_or(mapping.key);
            let mut body = Map::new();
            body.insert(key.to_owned(), value.clone());
            Ok(Outbound {
                topic: format!("{topic}/set"),
                payload: Value::Object(body).to_string().into_bytes(),
                expect: Expectation::Echo { topic: topic.to_owned(), key: key.to_owned(), value },
            })
        }
        Protocol::Tasmota => {
            let mapping = tasmota_mapping(&command.action).ok_or_else(|| unsupported(protocol, command))?;
            let value = mapping_value(mapping, command)?;
            let key = key.unwrap_or(mapping.key);
            let payload = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(Outbound {
                topic: format!("cmnd/{topic}/{key}"),
                payload: payload.into_bytes(),
                expect: Expectation::Echo { topic: tasmota_result_topic(topic), key: key.to_owned(), value },
            })
        }
    }
}

fn unsupported(protocol: Protocol, command: &Command) -> ProtocolError {
    ProtocolError::UnsupportedAction { protocol, action: command.action.clone() }
}

fn mapping_value(mapping: &ActionMapping, command: &Command) -> Result<Value, ProtocolError> {
    match (mapping.fixed, command.value) {
        (Some(fixed), _) => Ok(json!(fixed)),
        (None, Some(v)) => Ok(json!(v)),
        (None, None) => Err(ProtocolError::MissingValue { action: command.action.clone() }),
    }
}

/// The topic a Tasmota device reports command results on.
pub fn tasmota_result_topic(topic: &str) -> String {
    format!("stat/{topic}/RESULT")
}

/// Topics the engine subscribes to in order to see acknowledgements of
/// devices using `protocol` at base topic `topic` (empty for the hearken
/// protocol, whose answers arrive on the shared response topic).
pub fn ack_topics(protocol: Protocol, topic: &str) -> Vec<String> {
    match protocol {
        Protocol::Hearken => Vec::new(),
        Protocol::Zigbee2mqtt => vec![topic.to_owned()],
        Protocol::Tasmota => vec![tasmota_result_topic(topic)],
    }
}

/// Whether an echo payload confirms the expected state. Anything that is not
/// a JSON object with the key at the expected value is not a confirmation.
pub fn echo_confirms(payload: &[u8], key: &str, value: &Value) -> Option<Value> {
    let parsed: Value = serde_json::from_slice(payload).ok()?;
    let found = parsed.as_object()?.get(key)?;
    let equal = match (found.as_i64(), value.as_i64()) {
        (Some(a), Some(b)) => a == b,
        _ => found == value,
    };
    equal.then_some(parsed)
}

/// The device's answer in the hearken protocol (see `schemas/ack.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HearkenAck {
    /// `ok` when the device carried out the command, `error` when it refused.
    pub status: AckStatus,
    /// The device's state after the command, as it chooses to report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// Why the device refused, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a device carried out or refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Carried out.
    Ok,
    /// Refused.
    Error,
}

/// Parses a hearken-protocol acknowledgement; `None` for anything malformed.
pub fn parse_hearken_ack(payload: &[u8]) -> Option<HearkenAck> {
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cmd(action: &str, value: Option<i64>) -> Command {
        Command { device: "lamp".into(), action: action.into(), value }
    }

    #[test]
    fn a_device_key_replaces_the_protocol_key_in_the_payload_and_the_echo() {
        let out =
            encode(Protocol::Zigbee2mqtt, "zigbee2mqtt/relay", &cmd("turn_on", None), Some("state_l2"), b"").unwrap();
        assert_eq!(out.payload, br#"{"state_l2":"ON"}"#);
        assert_eq!(
            out.expect,
            Expectation::Echo { topic: "zigbee2mqtt/relay".into(), key: "state_l2".into(), value: json!("ON") }
        );
        let out = encode(Protocol::Tasmota, "strip", &cmd("turn_off", None), Some("POWER2"), b"").unwrap();
        assert_eq!(out.topic, "cmnd/strip/POWER2");
    }

    #[test]
    fn zigbee2mqtt_brightness_is_a_set_payload_with_an_echo_expectation() {
        let out =
            encode(Protocol::Zigbee2mqtt, "zigbee2mqtt/lamp", &cmd("set_brightness", Some(120)), None, b"").unwrap();
        assert_eq!(out.topic, "zigbee2mqtt/lamp/set");
        assert_eq!(out.payload, br#"{"brightness":120}"#);
        assert_eq!(
            out.expect,
            Expectation::Echo { topic: "zigbee2mqtt/lamp".into(), key: "brightness".into(), value: json!(120) }
        );
    }

    #[test]
    fn tasmota_power_goes_to_cmnd_and_waits_for_result() {
        let out = encode(Protocol::Tasmota, "plug1", &cmd("turn_on", None), None, b"").unwrap();
        assert_eq!(out.topic, "cmnd/plug1/POWER");
        assert_eq!(out.payload, b"ON");
        assert!(matches!(out.expect, Expectation::Echo { ref topic, .. } if topic == "stat/plug1/RESULT"));
    }

    #[test]
    fn hearken_carries_the_command_json_and_correlation() {
        let out = encode(Protocol::Hearken, "hearken/home/lamp", &cmd("turn_off", None), None, b"abc").unwrap();
        assert_eq!(out.topic, "hearken/home/lamp/set");
        let body: Command = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(body, cmd("turn_off", None));
        assert_eq!(out.expect, Expectation::Correlation(b"abc".to_vec()));
    }

    #[test]
    fn unsupported_and_missing_values_are_errors_not_panics() {
        assert!(matches!(
            encode(Protocol::Tasmota, "x", &cmd("unlock", None), None, b""),
            Err(ProtocolError::UnsupportedAction { .. })
        ));
        assert!(matches!(
            encode(Protocol::Zigbee2mqtt, "x", &cmd("set_brightness", None), None, b""),
            Err(ProtocolError::MissingValue { .. })
        ));
    }

    #[test]
    fn echo_must_carry_the_expected_value() {
        assert!(echo_confirms(br#"{"state":"ON","brightness":3}"#, "state", &json!("ON")).is_some());
        assert!(echo_confirms(br#"{"state":"OFF"}"#, "state", &json!("ON")).is_none());
        assert!(echo_confirms(br#"{"Dimmer":50.0}"#, "Dimmer", &json!(50)).is_none());
        assert!(echo_confirms(b"not json", "state", &json!("ON")).is_none());
        assert!(echo_confirms(b"[1,2]", "state", &json!("ON")).is_none());
    }

    #[test]
    fn hearken_ack_parsing_rejects_garbage() {
        assert_eq!(parse_hearken_ack(br#"{"status":"ok","state":{"on":true}}"#).unwrap().status, AckStatus::Ok);
        assert!(parse_hearken_ack(br#"{"status":"maybe"}"#).is_none());
        assert!(parse_hearken_ack(b"\xff\xfe").is_none());
    }
}
