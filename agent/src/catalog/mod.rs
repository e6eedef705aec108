//! The site's device catalog: what exists, what it can do, and how to reach it.
//!
//! The catalog is the single source of truth that every command is checked
//! against before it reaches MQTT. Loading validates the whole file and
//! reports every problem at once, each naming the file, the device and the
//! field, so an operator can fix a catalog in one pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod check;
pub mod command;
pub mod import;
pub mod protocol;
pub mod topics;
mod vocabulary;

pub use command::{Command, CommandError};
use protocol::Protocol;
pub use vocabulary::{Area, Floor, Kind};

/// Acknowledgement budget used when neither device, protocol nor catalog sets one.
pub const DEFAULT_BUDGET_MS: u64 = 200;

/// Largest budget a catalog may set: a command older than this is stale.
pub const MAX_BUDGET_MS: u64 = 60_000;

/// The catalog file as written, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    site: String,
    #[serde(default)]
    budget_ms: Option<u64>,
    #[serde(default)]
    protocol_budget_ms: BTreeMap<String, u64>,
    #[serde(default)]
    floors: Vec<FloorFile>,
    #[serde(default)]
    areas: Vec<AreaFile>,
    #[serde(default)]
    devices: Vec<DeviceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloorFile {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaFile {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    floor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    id: String,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    confirm: Vec<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    budget_ms: Option<u64>,
    #[serde(default)]
    ack: AckMode,
    #[serde(default)]
    params: BTreeMap<String, ParamRange>,
    #[serde(default)]
    keys: BTreeMap<String, String>,
    #[serde(default)]
    members: Vec<String>,
}

/// What confirms a command to a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// The device itself (response, echo or RESULT): the default.
    #[default]
    Device,
    /// Only the broker's PUBACK, for fire-and-forget devices that report
    /// nothing back; their outcome is at best `accepted`.
    Broker,
}

/// The allowed integer range of a value-taking action.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamRange {
    /// Smallest allowed value, inclusive.
    pub min: i64,
    /// Largest allowed value, inclusive.
    pub max: i64,
    /// Unit people say ("percent", "celsius"), for prompts and messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A validated catalog. Constructed only through [`Catalog::load`] or
/// [`Catalog::parse`], so holding one means every rule in DESIGN.md holds.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Where the catalog came from, for messages.
    pub source: PathBuf,
    /// Site name, used in default topics and the events topic.
    pub site: String,
    /// Devices in file order.
    pub devices: Vec<Device>,
    /// Floors, in file order.
    pub floors: Vec<Floor>,
    /// Areas: those declared in `[[areas]]`, then those named only on devices.
    pub areas: Vec<Area>,
    index: HashMap<String, usize>,
}

/// A validated device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Stable id (`[a-z0-9_]+`).
    pub id: String,
    /// What people call it.
    pub name: String,
    /// Other names people use.
    pub aliases: Vec<String>,
    /// Where it is, if the catalog says.
    pub area: Option<String>,
    /// What kind of thing it is: the catalog's `kind`, else guessed from its name.
    pub kind: Option<Kind>,
    /// Allowed actions, in catalog order.
    pub actions: Vec<String>,
    /// Actions that need confirmation before they are sent.
    pub confirm: Vec<String>,
    /// How commands are encoded and acknowledged.
    pub protocol: Protocol,
    /// Base topic for the protocol.
    pub topic: String,
    /// Publish → acknowledgement budget for this device.
    pub budget_ms: u64,
    /// Who confirms commands: the device (default) or only the broker.
    pub ack: AckMode,
    /// Ranges of value-taking actions.
    pub params: BTreeMap<String, ParamRange>,
    /// Payload keys that differ from the protocol's own for an action: a
    /// Zigbee2MQTT endpoint's `state_l1`, a fan's `fan_state`, a TRV's
    /// `current_heating_setpoint`, a Tasmota relay's `POWER2`.
    pub keys: BTreeMap<String, String>,
    /// Ids of the devices this one commands together (a Zigbee2MQTT group):
    /// when a request selects it and any of them, only they are commanded,
    /// so that no device gets the same command twice.
    pub members: Vec<String>,
}

impl Device {
    /// The range of a value-taking action, or `None` when the action takes no value.
    pub fn param(&self, action: &str) -> Option<&ParamRange> {
        self.params.get(action)
    }

    /// Whether the device supports the action.
    pub fn has_action(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }

    /// Whether the action waits for confirmation.
    pub fn needs_confirmation(&self, action: &str) -> bool {
        self.confirm.iter().any(|a| a == action)
    }
}

/// One thing wrong with a catalog, located precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Device id (or `#<index>` when the id itself is unusable); `None` for catalog-level fields.
    pub device: Option<String>,
    /// Field path inside the device or catalog, e.g. `params.set_brightness.min`.
    pub field: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("{file}: cannot read catalog: {source}")]
    Io {
        /// The catalog path.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has fields of the wrong type or name.
    #[error("{file}: not a valid catalog: {message}")]
    Syntax {
        /// The catalog path.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The file parsed but breaks catalog rules.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The catalog path.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match &p.device {
            Some(d) => format!("{}: device {d}: field {}: {}", file.display(), p.field, p.message),
            None => format!("{}: field {}: {}", file.display(), p.field, p.message),
        })
        .collect();
    lines.join("\n")
}

/// A site name is one MQTT topic level that is also safe in file names, JSON
/// and shell arguments: no wildcard, separator or leading dash ("plant-7").
fn is_site_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("must not be empty")
    } else if topic.contains(['+', '#']) {
        Some("must not contain MQTT wildcards '+' or '#'")
    } else if topic.starts_with('/') || topic.ends_with('/') {
        Some("must not start or end with '/'")
    } else if topic.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    }
}

fn check_budget(budget: u64) -> Option<String> {
    (budget == 0 || budget > MAX_BUDGET_MS).then(|| format!("must be between 1 and {MAX_BUDGET_MS} ms, got {budget}"))
}

impl Catalog {
    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CatalogError::Io { file: path.to_owned(), source })?;
        Catalog::parse(path, &text)
    }

    /// Validates catalog text; `path` is used only in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|e| CatalogError::Syntax { file: path.to_owned(), message: e.to_string() })?;
        let mut problems = Vec::new();
        let mut push = |device: Option<&str>, field: &str, message: String| {
            problems.push(Problem { device: device.map(str::to_owned), field: field.to_owned(), message });
        };

        if !is_site_name(&file.site) {
            push(
                None,
                "site",
                format!(
                    "'{}' must match [a-z0-9][a-z0-9_-]* and be at most 64 characters (it is a topic level and a file name)",
                    file.site
                ),
            );
        }
        if let Some(message) = file.budget_ms.and_then(check_budget) {
            push(None, "budget_ms", message);
        }
        let mut protocol_budgets = HashMap::new();
        for (name, budget) in &file.protocol_budget_ms {
            match Protocol::from_name(name) {
                Some(p) => {
                    protocol_budgets.insert(p, *budget);
                }
                None => push(None, &format!("protocol_budget_ms.{name}"), unknown_protocol_message(name)),
            }
            if let Some(message) = check_budget(*budget) {
                push(None, &format!("protocol_budget_ms.{name}"), message);
            }
        }
        if file.devices.is_empty() {
            push(None, "devices", "the catalog has no devices; add at least one [[devices]] table".to_owned());
        }

        let mut floors: Vec<Floor> = Vec::new();
        let mut place_names: HashMap<String, String> = HashMap::new();
        for (i, raw) in file.floors.iter().enumerate() {
            let field = format!("floors[{i}]");
            if raw.name.trim().is_empty() {
                push(None, &format!("{field}.name"), "must not be empty".to_owned());
            }
            for spoken_name in std::iter::once(&raw.name).chain(&raw.aliases) {
                let key = spoken_name.trim().to_lowercase();
                if let Some(owner) = place_names.insert(key, raw.name.clone()) {
                    push(None, &format!("{field}.aliases"), format!("'{spoken_name}' already names '{owner}'"));
                }
            }
            floors.push(Floor { name: raw.name.clone(), aliases: raw.aliases.clone() });
        }
        let mut areas: Vec<Area> = Vec::new();
        for (i, raw) in file.areas.iter().enumerate() {
            let field = format!("areas[{i}]");
            if raw.name.trim().is_empty() {
                push(None, &format!("{field}.name"), "must not be empty".to_owned());
            }
            if let Some(floor) = &raw.floor {
                if !floors.iter().any(|f| &f.name == floor) {
                    push(None, &format!("{field}.floor"), format!("'{floor}' is not one of the [[floors]]"));
                }
            }
            for spoken_name in std::iter::once(&raw.name).chain(&raw.aliases) {
                let key = spoken_name.trim().to_lowercase();
                if let Some(owner) = place_names.insert(key, raw.name.clone()) {
                    push(None, &format!("{field}.aliases"), format!("'{spoken_name}' already names '{owner}'"));
                }
            }
            areas.push(Area { name: raw.name.clone(), aliases: raw.aliases.clone(), floor: raw.floor.clone() });
        }
        for raw in &file.devices {
            if let Some(area) = &raw.area {
                if !areas.iter().any(|a| &a.name == area) {
                    areas.push(Area { name: area.clone(), aliases: Vec::new(), floor: None });
                }
            }
        }

        let mut devices = Vec::with_capacity(file.devices.len());
        let mut index = HashMap::new();
        let mut spoken: HashMap<String, String> = HashMap::new();
        for (position, raw) in file.devices.into_iter().enumerate() {
            let label = if is_identifier(&raw.id) { raw.id.clone() } else { format!("#{}", position + 1) };
            let dev = Some(label.as_str());
            if !is_identifier(&raw.id) {
                push(dev, "id", format!("'{}' must match [a-z0-9_]+", raw.id));
            } else if index.insert(raw.id.clone(), position).is_some() {
                push(dev, "id", format!("duplicate id '{}'", raw.id));
            }
            if raw.name.trim().is_empty() {
                push(dev, "name", "must not be empty".to_owned());
            }
            for spoken_name in std::iter::once(&raw.name).chain(raw.aliases.iter()) {
                let key = spoken_name.trim().to_lowercase();
                if key.is_empty() {
                    continue;
                }
                match spoken.get(&key) {
                    Some(owner) if owner != &raw.id => push(
                        dev,
                        if spoken_name == &raw.name { "name" } else { "aliases" },
                        format!(
                            "'{spoken_name}' is already a name of device '{owner}'; spoken names must be unambiguous"
                        ),
                    ),
                    _ => {
                        spoken.insert(key, raw.id.clone());
                    }
                }
            }

            let kind = match raw.kind.as_deref() {
                None => Kind::infer(&raw.name, &raw.actions),
                Some(name) => Kind::from_name(name).or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    push(dev, "kind", format!("unknown kind '{name}' (known: {})", known.join(", ")));
                    None
                }),
            };
            let protocol = match raw.protocol.as_deref() {
                None => Protocol::Hearken,
                Some(name) => Protocol::from_name(name).unwrap_or_else(|| {
                    push(dev, "protocol", unknown_protocol_message(name));
                    Protocol::Hearken
                }),
            };
            let protocol_known = raw.protocol.as_deref().is_none_or(|n| Protocol::from_name(n).is_some());

            if raw.actions.is_empty() {
                push(dev, "actions", "a device needs at least one action".to_owned());
            }
            let mut seen_actions = Vec::new();
            for action in &raw.actions {
                if !is_identifier(action) {
                    push(dev, "actions", format!("action '{action}' must match [a-z0-9_]+"));
                    continue;
                }
                if seen_actions.contains(&action) {
                    push(dev, "actions", format!("action '{action}' is listed twice"));
                }
                seen_actions.push(action);
                let has_params = raw.params.contains_key(action);
                match protocol_known.then(|| protocol.action_takes_value(action)).flatten() {
                    None if protocol_known => {
                        let supported = protocol.supported_actions().unwrap_or_default().join(", ");
                        push(
                            dev,
                            "actions",
                            format!("protocol {protocol} cannot encode action '{action}' (it supports: {supported})"),
                        );
                    }
                    Some(true) if !has_params => push(
                        dev,
                        &format!("params.{action}"),
                        format!("action '{action}' takes a value: add [devices.params.{action}] with min and max"),
                    ),
                    Some(false) if has_params && protocol != Protocol::Hearken => push(
                        dev,
                        &format!("params.{action}"),
                        format!("action '{action}' takes no value in protocol {protocol}"),
                    ),
                    _ => {}
                }
            }
            for (action, range) in &raw.params {
                if !raw.actions.contains(action) {
                    push(dev, &format!("params.{action}"), format!("'{action}' is not one of the device's actions"));
                }
                if range.min > range.max {
                    push(
                        dev,
                        &format!("params.{action}.min"),
                        format!("min {} is greater than max {}", range.min, range.max),
                    );
                }
            }
            for action in &raw.confirm {
                if !raw.actions.contains(action) {
                    push(dev, "confirm", format!("'{action}' is not one of the device's actions"));
                }
            }
            for (action, key) in &raw.keys {
                let field = format!("keys.{action}");
                if !raw.actions.contains(action) {
                    push(dev, &field, format!("'{action}' is not one of the device's actions"));
                }
                if protocol == Protocol::Hearken {
                    push(dev, &field, "payload keys are for the zigbee2mqtt and tasmota protocols".to_owned());
                }
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    push(dev, &field, format!("'{key}' must match [A-Za-z0-9_]+"));
                }
            }
            let topic = raw.topic.clone().unwrap_or_else(|| topics::device(&file.site, &raw.id));
            if let Some(message) = topic_problem(&topic) {
                push(dev, "topic", format!("'{topic}' {message}"));
            }
            if let Some(message) = raw.budget_ms.and_then(check_budget) {
                push(dev, "budget_ms", message);
            }
            let budget_ms = raw
                .budget_ms
                .or_else(|| protocol_budgets.get(&protocol).copied())
                .or(file.budget_ms)
                .unwrap_or(DEFAULT_BUDGET_MS);

            devices.push(Device {
                id: raw.id,
                name: raw.name,
                aliases: raw.aliases,
                area: raw.area,
                kind,
                actions: raw.actions,
                confirm: raw.confirm,
                protocol,
                topic,
                budget_ms,
                ack: raw.ack,
                params: raw.params,
                keys: raw.keys,
                members: raw.members,
            });
        }
        for device in &devices {
            for member in &device.members {
                let problem = match devices.iter().find(|d| &d.id == member) {
                    None => Some(format!("'{member}' is not a device of this catalog")),
                    Some(d) if d.id == device.id => Some("a device cannot be its own member".to_owned()),
                    Some(d) if !d.members.is_empty() => Some(format!("'{member}' is itself a group")),
                    Some(_) => None,
                };
                if let Some(message) = problem {
                    push(Some(&device.id), "members", message);
                }
            }
        }

        if !problems.is_empty() {
            return Err(CatalogError::Invalid { file: path.to_owned(), problems });
        }
        Ok(Catalog { source: path.to_owned(), site: file.site, devices, floors, areas, index })
    }

    /// Looks a device up by id.
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.index.get(id).and_then(|&i| self.devices.get(i))
    }

    /// The floor an area is on, if the catalog says.
    pub fn floor_of(&self, area: &str) -> Option<&str> {
        self.areas.iter().find(|a| a.name == area).and_then(|a| a.floor.as_deref())
    }

    /// The topic outcomes and other events are published on.
    pub fn events_topic(&self) -> String {
        topics::events(&self.site)
    }
}

fn unknown_protocol_message(name: &str) -> String {
    let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
    format!("unknown protocol '{name}' (known: {})", known.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LAMP: &str = r#"
site = "home"
[[devices]]
id = "lamp"
name = "lamp"
actions = ["turn_on", "set_brightness"]
[devices.params.set_brightness]
min = 0
max = 100
"#;

    #[test]
    fn defaults_fill_protocol_topic_and_budget() {
        let catalog = Catalog::parse(Path::new("t.toml"), LAMP).unwrap();
        let lamp = catalog.device("lamp").unwrap();
        assert_eq!(lamp.protocol, Protocol::Hearken);
        assert_eq!(lamp.topic, "hearken/home/lamp");
        assert_eq!(lamp.budget_ms, DEFAULT_BUDGET_MS);
        assert_eq!(catalog.events_topic(), "hearken/home/events");
    }

    #[test]
    fn device_budget_beats_protocol_budget_beats_catalog_budget() {
        let text = r#"
site = "s"
budget_ms = 300
protocol_budget_ms = { zigbee2mqtt = 400 }
[[devices]]
id = "a"
name = "a"
actions = ["turn_on"]
protocol = "zigbee2mqtt"
[[devices]]
id = "b"
name = "b"
actions = ["turn_on"]
protocol = "zigbee2mqtt"
budget_ms = 50
[[devices]]
id = "c"
name = "c"
actions = ["turn_on"]
"#;
        let catalog = Catalog::parse(Path::new("t.toml"), text).unwrap();
        assert_eq!(catalog.device("a").unwrap().budget_ms, 400);
        assert_eq!(catalog.device("b").unwrap().budget_ms, 50);
        assert_eq!(catalog.device("c").unwrap().budget_ms, 300);
    }
}
