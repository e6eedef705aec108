//! Catalogs written from what a site already publishes: Zigbee2MQTT's
//! `bridge/devices` and `bridge/groups`, Tasmota's discovery messages. The
//! result is catalog text (TOML) that `hearken devices check` accepts, with a
//! small hand-written overlay (names, aliases, areas, confirm lists, floors)
//! applied on top so that re-importing never loses what the operator added.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::protocol::Protocol;
use crate::catalog::{Kind, ParamRange};

pub mod tasmota;
pub mod z2m;

/// Errors of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A payload from the bridge is not what its protocol publishes.
    #[error("{what} is not a valid payload: {reason}")]
    Payload {
        /// Which payload ("zigbee2mqtt/bridge/devices").
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The overlay file cannot be read or parsed.
    #[error("overlay {file}: {reason}")]
    Overlay {
        /// The overlay file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing importable was found.
    #[error("no device that can be commanded was found ({skipped} skipped)")]
    Empty {
        /// How many devices were seen and skipped.
        skipped: usize,
    },
}

/// One device as imported, before the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedDevice {
    /// Catalog id, from the device's name.
    pub id: String,
    /// Spoken name.
    pub name: String,
    /// Area, when the naming convention says ("kitchen/ceiling light").
    pub area: Option<String>,
    /// Kind, from what the device exposes.
    pub kind: Kind,
    /// Actions in catalog order.
    pub actions: Vec<String>,
    /// Actions that wait for confirmation by default (unlocking).
    pub confirm: Vec<String>,
    /// How commands are encoded.
    pub protocol: Protocol,
    /// Base topic.
    pub topic: String,
    /// Native ranges of value-taking actions.
    pub params: BTreeMap<String, ParamRange>,
    /// Payload keys that differ from the protocol's own.
    pub keys: BTreeMap<String, String>,
    /// For a group, the ids of its members.
    pub members: Vec<String>,
}

/// What an import found: the devices, and what it left out and why.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// Commandable devices.
    pub devices: Vec<ImportedDevice>,
    /// Left out, each with the reason (printed as warnings).
    pub skipped: Vec<String>,
}

/// The hand-written part that survives re-import.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Site name (else the one given on the command line).
    #[serde(default)]
    pub site: Option<String>,
    /// Floors, copied as they are.
    #[serde(default)]
    pub floors: Vec<PlaceOut>,
    /// Areas, copied as they are.
    #[serde(default)]
    pub areas: Vec<PlaceOut>,
    /// Per device id: what to change.
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceOverlay>,
}

/// Changes to one imported device.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverlay {
    /// Another spoken name.
    #[serde(default)]
    pub name: Option<String>,
    /// More names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where it is.
    #[serde(default)]
    pub area: Option<String>,
    /// Another kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// The actions that wait for confirmation (replaces the default list).
    #[serde(default)]
    pub confirm: Option<Vec<String>>,
    /// Leave the device out of the catalog.
    #[serde(default)]
    pub skip: bool,
}

impl Overlay {
    /// Reads and parses an overlay file.
    pub fn read(path: &std::path::Path) -> Result<Overlay, ImportError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ImportError::Overlay { file: file.clone(), reason: e.to_string() })?;
        Overlay::parse(&file, &text)
    }

    /// Parses overlay text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Overlay, ImportError> {
        toml::from_str(text).map_err(|e| ImportError::Overlay { file: file.to_owned(), reason: e.to_string() })
    }
}

/// A floor or area as written in a catalog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOut {
    name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<String>,
}

#[derive(Serialize)]
struct CatalogOut {
    site: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    floors: Vec<PlaceOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    areas: Vec<PlaceOut>,
    devices: Vec<DeviceOut>,
}

#[derive(Serialize)]
struct DeviceOut {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    area: Option<String>,
    actions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    confirm: Vec<String>,
    protocol: String,
    topic: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    keys: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    params: BTreeMap<String, ParamRange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<String>,
}

/// Writes the catalog text of `import` for `site`, the overlay applied. The
/// text still has to pass [`crate::catalog::Catalog::parse`]; the caller
/// checks it before anyone uses it.
pub fn write_catalog(site: &str, import: &Import, overlay: &Overlay, source: &str) -> String {
    let skipped = |id: &str| overlay.devices.get(id).is_some_and(|c| c.skip);
    let devices = import
        .devices
        .iter()
        .filter_map(|d| {
            if skipped(&d.id) {
                return None;
            }
            let change = overlay.devices.get(&d.id);
            Some(DeviceOut {
                id: d.id.clone(),
                name: change.and_then(|c| c.name.clone()).unwrap_or_else(|| d.name.clone()),
                aliases: change.map(|c| c.aliases.clone()).unwrap_or_default(),
                kind: change.and_then(|c| c.kind.clone()).unwrap_or_else(|| d.kind.name().to_owned()),
                area: change.and_then(|c| c.area.clone()).or_else(|| d.area.clone()),
                actions: d.actions.clone(),
                confirm: change.and_then(|c| c.confirm.clone()).unwrap_or_else(|| d.confirm.clone()),
                protocol: d.protocol.to_string(),
                topic: d.topic.clone(),
                keys: d.keys.clone(),
                params: d.params.clone(),
                members: d.members.iter().filter(|m| !skipped(m)).cloned().collect(),
            })
        })
        .collect();
    let catalog = CatalogOut {
        site: overlay.site.clone().unwrap_or_else(|| site.to_owned()),
        floors: overlay.floors.clone(),
        areas: overlay.areas.clone(),
        devices,
    };
    let body = toml::to_string(&catalog).unwrap_or_default();
    format!("# Imported by `hearken devices import` from {source}; edit the overlay, not this file.\n{body}")
}

/// A catalog id from a name: lowercase letters, digits and `_`.
pub(crate) fn slug(name: &str) -> String {
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    let id = id.trim_matches('_').to_owned();
    if id.is_empty() {
        "device".to_owned()
    } else {
        id
    }
}

/// Makes ids and spoken names unique by numbering repeats ("plug", "plug 2").
pub(crate) fn make_unique(devices: &mut [ImportedDevice]) {
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for device in devices.iter_mut() {
        let n = ids.entry(device.id.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            device.id = format!("{}_{n}", device.id);
        }
        let n = names.entry(device.name.to_lowercase()).or_insert(0);
        *n += 1;
        if *n > 1 {
            device.name = format!("{} {n}", device.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slugs_are_catalog_ids() {
        assert_eq!(slug("Kitchen/Ceiling Light"), "kitchen_ceiling_light");
        assert_eq!(slug("0x00158d0001a2b3c4"), "0x00158d0001a2b3c4");
        assert_eq!(slug("  --  "), "device");
    }
}
