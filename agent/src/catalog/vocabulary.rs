//! The site's vocabulary beyond device names: floors, areas with their
//! floor, and a kind per device. It lets people say what they say — "the
//! lights in the kitchen", "everything downstairs", "the blinds" — and lets
//! hearken tell a request for something the site does not have from one for
//! something it has.

use serde::Serialize;

/// What kind of thing a device is. A kind brings the words people use for it
/// ("lights", "lamps"; "blinds", "shades"; "music", "speaker").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Lamps, bulbs, ceiling lights.
    Light,
    /// Plugs, sockets, relays.
    Switch,
    /// Fans.
    Fan,
    /// Blinds, shades, curtains, shutters, garage doors, gates.
    Cover,
    /// Door locks.
    Lock,
    /// Thermostats, heating, air conditioning.
    Climate,
    /// TVs, speakers, radios.
    MediaPlayer,
    /// Robot vacuums.
    Vacuum,
    /// Robot lawn mowers.
    LawnMower,
    /// Water and gas valves, sprinklers.
    Valve,
    /// Scenes.
    Scene,
    /// Scripts.
    Script,
    /// Sensors (read only).
    Sensor,
}

impl Kind {
    /// Every kind, in the order the catalog docs list them.
    pub const ALL: [Kind; 13] = [
        Kind::Light,
        Kind::Switch,
        Kind::Fan,
        Kind::Cover,
        Kind::Lock,
        Kind::Climate,
        Kind::MediaPlayer,
        Kind::Vacuum,
        Kind::LawnMower,
        Kind::Valve,
        Kind::Scene,
        Kind::Script,
        Kind::Sensor,
    ];

    /// The name in catalogs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Light => "light",
            Kind::Switch => "switch",
            Kind::Fan => "fan",
            Kind::Cover => "cover",
            Kind::Lock => "lock",
            Kind::Climate => "climate",
            Kind::MediaPlayer => "media_player",
            Kind::Vacuum => "vacuum",
            Kind::LawnMower => "lawn_mower",
            Kind::Valve => "valve",
            Kind::Scene => "scene",
            Kind::Script => "script",
            Kind::Sensor => "sensor",
        }
    }

    /// The kind a catalog names.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What people call things of this kind, singular; plurals are matched too.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Kind::Light => &["light", "lamp", "lighting", "bulb", "chandelier", "sconce", "spotlight", "downlight"],
            Kind::Switch => &["switch", "plug", "socket", "outlet", "relay"],
            Kind::Fan => &["fan", "ventilator"],
            Kind::Cover => &["blind", "shade", "curtain", "shutter", "cover", "awning", "drape", "roller"],
            Kind::Lock => &["lock", "deadbolt"],
            Kind::Climate => {
                &["thermostat", "heating", "heater", "ac", "aircon", "radiator", "climate", "hvac", "heat"]
            }
            Kind::MediaPlayer => {
                &["tv", "television", "speaker", "music", "radio", "stereo", "media", "player", "soundbar"]
            }
            Kind::Vacuum => &["vacuum", "hoover", "roomba", "vacuum cleaner", "robot vacuum"],
            Kind::LawnMower => &["mower", "lawnmower", "lawn mower", "robot mower"],
            Kind::Valve => &["valve", "sprinkler", "irrigation"],
            Kind::Scene => &["scene"],
            Kind::Script => &["script", "routine"],
            Kind::Sensor => &["sensor"],
        }
    }

    /// A kind guessed from a device's name when the catalog gives none: the
    /// last word that is a kind word ("porch light" → light, "garage door" → cover).
    pub fn infer(name: &str, actions: &[String]) -> Option<Kind> {
        let words: Vec<String> = name.to_lowercase().split_whitespace().map(str::to_owned).collect();
        for word in words.iter().rev() {
            let singular = word.strip_suffix('s').filter(|s| s.len() >= 2).unwrap_or(word);
            if let Some(kind) =
                Kind::ALL.into_iter().find(|k| k.words().contains(&singular) || k.words().contains(&word.as_str()))
            {
                return Some(kind);
            }
        }
        let has = |a: &str| actions.iter().any(|x| x == a);
        if words.iter().any(|w| matches!(w.as_str(), "door" | "gate" | "window")) && has("open") && has("close") {
            return Some(Kind::Cover);
        }
        if has("lock") && has("unlock") {
            return Some(Kind::Lock);
        }
        if has("return_to_dock") {
            return Some(Kind::Vacuum);
        }
        None
    }
}

/// A floor of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    /// What people call it ("ground floor").
    pub name: String,
    /// Other names ("downstairs").
    pub aliases: Vec<String>,
}

/// An area (room, zone) of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// What people call it; devices name it in `area`.
    pub name: String,
    /// Other names ("lounge").
    pub aliases: Vec<String>,
    /// The floor it is on, if the catalog says.
    pub floor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_inferred_from_the_last_kind_word_of_a_name() {
        assert_eq!(Kind::infer("porch light", &[]), Some(Kind::Light));
        assert_eq!(Kind::infer("living room blinds", &[]), Some(Kind::Cover));
        assert_eq!(Kind::infer("garage door", &["open".into(), "close".into()]), Some(Kind::Cover));
        assert_eq!(Kind::infer("front door", &["lock".into(), "unlock".into()]), Some(Kind::Lock));
        assert_eq!(Kind::infer("coffee machine", &["turn_on".into()]), None);
        assert_eq!(Kind::from_name("media_player"), Some(Kind::MediaPlayer));
        assert!(Kind::ALL.iter().all(|k| Kind::from_name(k.name()) == Some(*k)));
    }
}
