//! Zigbee2MQTT's `bridge/devices` and `bridge/groups` to catalog devices.
//!
//! One device per commandable expose (a two-gang switch is two devices, each
//! with its endpoint's payload key, `state_l1`), the kind from the expose
//! type, the native ranges from the device's own `value_min`/`value_max`
//! (brightness 0–254, colour temperature in mireds, heating set point), only
//! features Zigbee2MQTT can set (`access` bit 2). A friendly name with a
//! slash names the area first ("kitchen/ceiling light"). Locks wait for
//! confirmation to unlock. Groups become devices with the actions all their
//! members share.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{make_unique, slug, Import, ImportError, ImportedDevice};
use crate::catalog::protocol::Protocol;
use crate::catalog::{Kind, ParamRange};

/// The `access` bit that says a feature can be set.
const SETTABLE: u64 = 2;

/// Reads `bridge/devices` (and `bridge/groups`, when retained) published
/// under `base_topic`.
pub fn import(devices: &[u8], groups: Option<&[u8]>, base_topic: &str) -> Result<Import, ImportError> {
    let list = parse_array(devices, &format!("{base_topic}/bridge/devices"))?;
    let mut import = Import::default();
    let mut by_address: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for device in &list {
        let friendly = device["friendly_name"].as_str().unwrap_or_default();
        if device["type"] == "Coordinator" {
            continue;
        }
        if device["disabled"] == true {
            import.skipped.push(format!("{friendly}: disabled in Zigbee2MQTT"));
            continue;
        }
        let Some(exposes) = device["definition"]["exposes"].as_array() else {
            import.skipped.push(format!("{friendly}: not supported by Zigbee2MQTT (no definition)"));
            continue;
        };
        let (area, name) = place_and_name(friendly, &device["definition"]);
        let before = import.devices.len();
        let mut problems = Vec::new();
        for expose in exposes {
            let endpoint = expose["endpoint"].as_str();
            match convert(expose, endpoint, &name) {
                Ok(Some((kind, actions, params, keys, confirm))) => {
                    let (id, spoken) = match endpoint {
                        Some(ep) => {
                            (format!("{}_{}", slug(friendly), slug(ep)), format!("{name} {}", spoken_endpoint(ep)))
                        }
                        // A second part of one device (the light of a ceiling fan) is called by its kind.
                        None if import.devices.len() > before => {
                            let word = kind.words()[0];
                            (format!("{}_{word}", slug(friendly)), format!("{name} {word}"))
                        }
                        None => (slug(friendly), name.clone()),
                    };
                    import.devices.push(ImportedDevice {
                        id,
                        name: spoken,
                        area: area.clone(),
                        kind,
                        actions,
                        confirm,
                        protocol: Protocol::Zigbee2mqtt,
                        topic: format!("{base_topic}/{friendly}"),
                        params,
                        keys,
                        members: Vec::new(),
                    });
                }
                Ok(None) => {}
                Err(why) => problems.push(format!("{friendly}: {why}")),
            }
        }
        if import.devices.len() == before {
            if problems.is_empty() {
                problems.push(format!("{friendly}: nothing hearken can command (a sensor or a remote)"));
            }
            import.skipped.extend(problems);
        } else if let Some(address) = device["ieee_address"].as_str() {
            by_address.entry(address.to_owned()).or_default().extend(before..import.devices.len());
        }
    }
    if let Some(groups) = groups {
        for group in parse_array(groups, &format!("{base_topic}/bridge/groups"))? {
            match convert_group(&group, &import.devices, &by_address, base_topic) {
                Ok(device) => import.devices.push(device),
                Err(why) => {
                    import.skipped.push(format!("group {}: {why}", group["friendly_name"].as_str().unwrap_or("?")))
                }
            }
        }
    }
    qualify_repeated_names(&mut import.devices);
    make_unique(&mut import.devices);
    if import.devices.is_empty() {
        return Err(ImportError::Empty { skipped: import.skipped.len() });
    }
    Ok(import)
}

/// A name several areas share ("radiator" in the bedroom and the office) is
/// said with its area ("bedroom radiator"); a name only one device has stays
/// short, so that "the floor lamp" is the floor lamp.
fn qualify_repeated_names(devices: &mut [ImportedDevice]) {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for device in devices.iter() {
        *count.entry(device.name.clone()).or_default() += 1;
    }
    for device in devices.iter_mut() {
        if let Some(area) = &device.area {
            if count[&device.name] > 1 && !device.name.contains(area.as_str()) {
                device.name = format!("{area} {}", device.name);
            }
        }
    }
}

fn parse_array(payload: &[u8], what: &str) -> Result<Vec<Value>, ImportError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(ImportError::Payload { what: what.to_owned(), reason: "not a JSON array".into() }),
        Err(e) => Err(ImportError::Payload { what: what.to_owned(), reason: e.to_string() }),
    }
}

/// "kitchen/ceiling light" → (kitchen, "ceiling light"); an unnamed device
/// (its IEEE address) is called by its description.
fn place_and_name(friendly: &str, definition: &Value) -> (Option<String>, String) {
    let spoken = |s: &str| s.replace(['_', '-'], " ").split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    if friendly.starts_with("0x") && friendly.len() >= 10 {
        let description = definition["description"].as_str().or(definition["model"].as_str()).unwrap_or("device");
        return (None, spoken(description));
    }
    let parts: Vec<&str> = friendly.split('/').filter(|p| !p.trim().is_empty()).collect();
    match parts.as_slice() {
        [] => (None, spoken(friendly)),
        [name] => (None, spoken(name)),
        [.., area, name] => (Some(spoken(area)), spoken(name)),
    }
}

/// "l1" → "1"; "left" stays "left".
fn spoken_endpoint(endpoint: &str) -> String {
    match endpoint.strip_prefix('l').filter(|n| n.parse::<u32>().is_ok()) {
        Some(n) => n.to_owned(),
        None => endpoint.replace('_', " "),
    }
}

type Converted = (Kind, Vec<String>, BTreeMap<String, ParamRange>, BTreeMap<String, String>, Vec<String>);

/// One expose to a kind, actions, ranges, keys and confirm list; `None` when
/// the expose is not a device hearken commands (a sensor value, a setting).
fn convert(expose: &Value, endpoint: Option<&str>, name: &str) -> Result<Option<Converted>, String> {
    let kind = match expose["type"].as_str() {
        Some("light") => Kind::Light,
        // A plug named "floor lamp" switches a lamp: people call it a light.
        Some("switch") => match Kind::infer(name, &[]) {
            Some(Kind::Light) => Kind::Light,
            _ => Kind::Switch,
        },
        Some("cover") => Kind::Cover,
        Some("lock") => Kind::Lock,
        Some("climate") => Kind::Climate,
        Some("fan") => Kind::Fan,
        _ => return Ok(None),
    };
    let features = expose["features"].as_array().cloned().unwrap_or_default();
    let settable = |f: &&Value| f["access"].as_u64().is_some_and(|a| a & SETTABLE != 0);
    let mut actions = Vec::new();
    let mut params = BTreeMap::new();
    let mut keys = BTreeMap::new();
    let mut confirm = Vec::new();
    let mut add = |action: &str, property: &str, default_key: &str, range: Option<ParamRange>| {
        // The first feature that can do an action does it (a TRV with two set points).
        if actions.iter().any(|a| a == action) {
            return;
        }
        actions.push(action.to_owned());
        if property != default_key {
            keys.insert(action.to_owned(), property.to_owned());
        }
        if let Some(range) = range {
            params.insert(action.to_owned(), range);
        }
    };
    for feature in features.iter().filter(settable) {
        let name = feature["name"].as_str().unwrap_or_default();
        let property = feature["property"].as_str().unwrap_or(name);
        let on = feature["value_on"].as_str();
        let off = feature["value_off"].as_str();
        let range = |unit: Option<&str>| {
            let min = feature["value_min"].as_f64()?;
            let max = feature["value_max"].as_f64()?;
            Some(ParamRange { min: min.ceil() as i64, max: max.floor() as i64, unit: unit.map(str::to_owned) })
        };
        match (kind, feature["type"].as_str(), name) {
            (Kind::Lock, Some("binary"), "state") => {
                if on != Some("LOCK") || off != Some("UNLOCK") {
                    return Err(format!("lock state values {on:?}/{off:?} are not LOCK/UNLOCK"));
                }
                add("lock", property, "state", None);
                add("unlock", property, "state", None);
                confirm.push("unlock".to_owned());
            }
            (Kind::Cover, Some("enum"), "state") => {
                let values: Vec<&str> =
                    feature["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if values.contains(&"OPEN") && values.contains(&"CLOSE") {
                    add("open", property, "state", None);
                    add("close", property, "state", None);
                }
            }
            (Kind::Cover, Some("numeric"), "position") => add(
                "set_position",
                property,
                "position",
                Some(ParamRange { min: 0, max: 100, unit: Some("percent".into()) }),
            ),
            (Kind::Climate, Some("numeric"), "occupied_heating_setpoint" | "current_heating_setpoint") => {
                match range(Some("celsius")) {
                    Some(r) => add("set_temperature", property, "occupied_heating_setpoint", Some(r)),
                    None => return Err(format!("{property} has no value_min/value_max")),
                }
            }
            // The device's on/off, not a setting that happens to be a switch ("window_detection").
            (_, Some("binary"), _) if is_power(property, endpoint) => {
                if on != Some("ON") || off != Some("OFF") {
                    return Err(format!("{property} values {on:?}/{off:?} are not ON/OFF"));
                }
                add("turn_on", property, "state", None);
                add("turn_off", property, "state", None);
            }
            (Kind::Light, Some("numeric"), "brightness") => {
                let r = range(None).unwrap_or(ParamRange { min: 0, max: 254, unit: None });
                add("set_brightness", property, "brightness", Some(r));
            }
            (Kind::Light, Some("numeric"), "color_temp") => {
                if let Some(r) = range(Some("mired")) {
                    add("set_color_temp", property, "color_temp", Some(r));
                }
            }
            _ => {}
        }
    }
    if actions.is_empty() {
        return Err(format!("its {} exposes nothing hearken can set", kind.name()));
    }
    Ok(Some((kind, actions, params, keys, confirm)))
}

/// Whether a property is what turns the device (or its endpoint) on and off.
fn is_power(property: &str, endpoint: Option<&str>) -> bool {
    property == "state" || property == "fan_state" || endpoint.is_some_and(|ep| property == format!("state_{ep}"))
}

/// A Zigbee2MQTT group: one device whose actions are those every member has,
/// with the protocol's own keys (a group takes `state` and `brightness`),
/// and its members' ids, so that a request that selects the group and its
/// members does not command them twice.
fn convert_group(
    group: &Value,
    devices: &[ImportedDevice],
    by_address: &BTreeMap<String, Vec<usize>>,
    base_topic: &str,
) -> Result<ImportedDevice, String> {
    let friendly = group["friendly_name"].as_str().ok_or("no friendly_name")?;
    let members: Vec<&ImportedDevice> = group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| by_address.get(m["ieee_address"].as_str()?))
        .filter_map(|indices| indices.first().map(|&i| &devices[i]))
        .collect();
    let first = members.first().ok_or("no member hearken imported")?;
    if members.iter().any(|m| m.kind != first.kind) {
        return Err("members of different kinds".into());
    }
    let shared = |action: &str| members.iter().all(|m| m.has_plain(action));
    let actions: Vec<String> = first.actions.iter().filter(|a| shared(a)).cloned().collect();
    if actions.is_empty() {
        return Err("its members share no action".into());
    }
    let params = actions
        .iter()
        .filter_map(|a| {
            let ranges: Vec<&ParamRange> = members.iter().filter_map(|m| m.params.get(a)).collect();
            let min = ranges.iter().map(|r| r.min).max()?;
            let max = ranges.iter().map(|r| r.max).min()?;
            Some((a.clone(), ParamRange { min, max, unit: ranges[0].unit.clone() }))
        })
        .collect();
    let (area, name) = place_and_name(friendly, &Value::Null);
    Ok(ImportedDevice {
        id: slug(friendly),
        name,
        area,
        kind: first.kind,
        confirm: first.confirm.iter().filter(|a| actions.contains(a)).cloned().collect(),
        actions,
        protocol: Protocol::Zigbee2mqtt,
        topic: format!("{base_topic}/{friendly}"),
        params,
        keys: BTreeMap::new(),
        members: members.iter().map(|m| m.id.clone()).collect(),
    })
}

impl ImportedDevice {
    /// Whether the device has the action under the protocol's own key.
    fn has_plain(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action) && !self.keys.contains_key(action)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bulb_a_two_gang_switch_and_a_lock() {
        let devices = serde_json::json!([
            {"type": "Coordinator", "friendly_name": "Coordinator", "ieee_address": "0x00"},
            {"friendly_name": "kitchen/ceiling light", "ieee_address": "0x01", "type": "Router",
             "definition": {"model": "LED1545G12", "exposes": [{"type": "light", "features": [
                {"type": "binary", "name": "state", "property": "state", "access": 7, "value_on": "ON", "value_off": "OFF"},
                {"type": "numeric", "name": "brightness", "property": "brightness", "access": 7, "value_min": 0, "value_max": 254},
                {"type": "numeric", "name": "color_temp", "property": "color_temp", "access": 7, "value_min": 250, "value_max": 454}]},
                {"type": "numeric", "name": "linkquality", "property": "linkquality", "access": 1}]}},
            {"friendly_name": "hall switch", "ieee_address": "0x02", "type": "Router",
             "definition": {"model": "QBKG12LM", "exposes": [
                {"type": "switch", "endpoint": "left", "features": [{"type": "binary", "name": "state", "property": "state_left", "access": 7, "value_on": "ON", "value_off": "OFF"}]},
                {"type": "switch", "endpoint": "right", "features": [{"type": "binary", "name": "state", "property": "state_right", "access": 7, "value_on": "ON", "value_off": "OFF"}]}]}},
            {"friendly_name": "front door", "ieee_address": "0x03", "type": "EndDevice",
             "definition": {"model": "YRD426NRSC", "exposes": [{"type": "lock", "features": [
                {"type": "binary", "name": "state", "property": "state", "access": 7, "value_on": "LOCK", "value_off": "UNLOCK"}]}]}},
            {"friendly_name": "motion", "ieee_address": "0x04", "type": "EndDevice",
             "definition": {"model": "RTCGQ11LM", "exposes": [{"type": "binary", "name": "occupancy", "property": "occupancy", "access": 1}]}}
        ]);
        let import = import(devices.to_string().as_bytes(), None, "zigbee2mqtt").unwrap();
        let ids: Vec<&str> = import.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["kitchen_ceiling_light", "hall_switch_left", "hall_switch_right", "front_door"]);
        let bulb = &import.devices[0];
        assert_eq!(bulb.name, "ceiling light");
        assert_eq!(bulb.area.as_deref(), Some("kitchen"));
        assert_eq!(bulb.actions, ["turn_on", "turn_off", "set_brightness", "set_color_temp"]);
        assert_eq!(bulb.params["set_color_temp"].min, 250);
        assert_eq!(bulb.topic, "zigbee2mqtt/kitchen/ceiling light");
        assert_eq!(import.devices[1].keys["turn_on"], "state_left");
        assert_eq!(import.devices[1].name, "hall switch left");
        assert_eq!(import.devices[3].confirm, ["unlock"]);
        assert_eq!(import.skipped.len(), 1, "{:?}", import.skipped);
    }

    #[test]
    fn not_an_array_is_a_clear_error() {
        let err = import(b"{\"x\":1}", None, "zigbee2mqtt").unwrap_err();
        assert!(err.to_string().contains("zigbee2mqtt/bridge/devices"), "{err}");
    }
}
