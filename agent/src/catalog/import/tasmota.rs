//! Tasmota's discovery messages (`tasmota/discovery/<mac>/config`) to catalog
//! devices: one per relay (`rl` 1 = relay, 2 = light), a dimmer range
//! (0–100 %) and colour temperature (153–500 mired) from the light subtype
//! `lt_st`, the fan speed of an iFan; a device with several relays addresses
//! each as `POWER1`, `POWER2`, …

use std::collections::BTreeMap;

use serde_json::Value;

use super::{make_unique, slug, Import, ImportError, ImportedDevice};
use crate::catalog::protocol::Protocol;
use crate::catalog::{Kind, ParamRange};

/// Reads discovery `config` payloads, each with the topic it came on.
pub fn import(configs: &[(String, Vec<u8>)]) -> Result<Import, ImportError> {
    let mut import = Import::default();
    for (topic, payload) in configs {
        let config: Value = serde_json::from_slice(payload)
            .map_err(|e| ImportError::Payload { what: topic.clone(), reason: e.to_string() })?;
        let Some(device_topic) = config["t"].as_str() else {
            import.skipped.push(format!("{topic}: no device topic (t)"));
            continue;
        };
        let device_name = config["dn"].as_str().unwrap_or(device_topic);
        let relays: Vec<u64> = config["rl"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
        let friendly: Vec<Option<&str>> = config["fn"].as_array().into_iter().flatten().map(Value::as_str).collect();
        let used: Vec<usize> = relays.iter().enumerate().filter(|(_, &r)| r == 1 || r == 2).map(|(i, _)| i).collect();
        let light_subtype = config["lt_st"].as_u64().unwrap_or(0);
        let before = import.devices.len();
        for &i in &used {
            let name = friendly.get(i).copied().flatten().filter(|n| !n.is_empty()).unwrap_or(device_name);
            let key = if used.len() > 1 { Some(format!("POWER{}", i + 1)) } else { None };
            let mut actions = vec!["turn_on".to_owned(), "turn_off".to_owned()];
            let mut params = BTreeMap::new();
            let light = relays[i] == 2;
            if light && light_subtype >= 1 {
                actions.push("set_brightness".into());
                params.insert("set_brightness".into(), ParamRange { min: 0, max: 100, unit: Some("percent".into()) });
            }
            if light && matches!(light_subtype, 2 | 5) {
                actions.push("set_color_temp".into());
                params.insert("set_color_temp".into(), ParamRange { min: 153, max: 500, unit: Some("mired".into()) });
            }
            let kind = if light || Kind::infer(name, &[]) == Some(Kind::Light) { Kind::Light } else { Kind::Switch };
            let keys = key
                .iter()
                .flat_map(|k| [("turn_on".to_owned(), k.clone()), ("turn_off".to_owned(), k.clone())])
                .collect();
            import.devices.push(ImportedDevice {
                id: slug(name),
                name: name.to_lowercase(),
                area: None,
                kind,
                actions,
                confirm: Vec::new(),
                protocol: Protocol::Tasmota,
                topic: device_topic.to_owned(),
                params,
                keys,
                members: Vec::new(),
            });
        }
        if config["if"].as_u64().is_some_and(|f| f > 0) {
            import.devices.push(ImportedDevice {
                id: slug(&format!("{device_name} fan")),
                name: format!("{} fan", device_name.to_lowercase()),
                area: None,
                kind: Kind::Fan,
                actions: vec!["set_speed".into()],
                confirm: Vec::new(),
                protocol: Protocol::Tasmota,
                topic: device_topic.to_owned(),
                params: BTreeMap::from([("set_speed".into(), ParamRange { min: 0, max: 3, unit: None })]),
                keys: BTreeMap::new(),
                members: Vec::new(),
            });
        }
        if import.devices.len() == before {
            import.skipped.push(format!("{device_name}: no relay or light hearken can command"));
        }
    }
    make_unique(&mut import.devices);
    if import.devices.is_empty() {
        return Err(ImportError::Empty { skipped: import.skipped.len() });
    }
    Ok(import)
}
