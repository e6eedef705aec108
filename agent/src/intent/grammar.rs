//! What plain English says, before any model: whether an utterance is a
//! request at all (questions, timers, lists, chit-chat are not), what it
//! asks for — a verb with its sense ("down" is not "up", "resume" is not
//! "pause", "back a song" is not "next") and a value ("50 percent", "max",
//! "halfway") — and which action of a given device that is. Pure functions
//! over normalized words; a verb a device cannot do is a refusal with its
//! reason, never another action.

use crate::catalog::{Device, Kind, ParamRange};

/// Why an utterance gives no command: the reason codes of the report, the
/// audit record and `hearken interpret`, serialized as the contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoCommandReason {
    /// Nothing was said.
    Empty,
    /// A question ("is the door locked", "hows the heating doing").
    Question,
    /// Not a device request: timers, alarms, lists, weather, time, chit-chat, negations.
    NotACommand,
    /// No device, kind, area or action of the catalog is named.
    NoDevice,
    /// The request names a device, kind, area or floor the site does not have.
    NoSuchDevice,
    /// The target exists but cannot do what was asked.
    UnsupportedAction,
    /// Several devices fit and nothing says which.
    Ambiguous,
    /// A device is named but nothing is asked of it.
    NoAction,
    /// The model found nothing to do.
    Model,
}

impl NoCommandReason {
    /// The reason's name in reports, audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCommandReason::Empty => "empty",
            NoCommandReason::Question => "question",
            NoCommandReason::NotACommand => "not_a_command",
            NoCommandReason::NoDevice => "no_device",
            NoCommandReason::NoSuchDevice => "no_such_device",
            NoCommandReason::UnsupportedAction => "unsupported_action",
            NoCommandReason::Ambiguous => "ambiguous",
            NoCommandReason::NoAction => "no_action",
            NoCommandReason::Model => "model",
        }
    }
}

/// A refusal: the reason code and a sentence a person can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub reason: NoCommandReason,
    /// What was not possible ("there is no lock in the kitchen").
    pub explanation: String,
}

impl Refusal {
    /// A refusal with its explanation.
    pub fn new(reason: NoCommandReason, explanation: impl Into<String>) -> Refusal {
        Refusal { reason, explanation: explanation.into() }
    }
}

/// Words that make an utterance a question when they come first.
const QUESTION_STARTS: &[&str] = &[
    "is", "are", "was", "were", "what", "whats", "who", "whos", "when", "whens", "where", "wheres", "why", "how",
    "hows", "which", "does", "did", "do", "has", "have", "should", "shall", "any", "anything", "anyone", "isnt",
    "arent", "doesnt", "didnt", "hasnt", "havent", "status", "tell", "show", "check", "am",
];

/// Verbs that make a request out of "can you …", "could you …", "i want you to …".
const REQUEST_VERBS: &[&str] = &[
    "turn",
    "switch",
    "set",
    "put",
    "make",
    "start",
    "stop",
    "open",
    "close",
    "shut",
    "lock",
    "unlock",
    "play",
    "pause",
    "resume",
    "continue",
    "mute",
    "unmute",
    "dim",
    "brighten",
    "raise",
    "lower",
    "increase",
    "decrease",
    "reduce",
    "skip",
    "send",
    "run",
    "activate",
    "deactivate",
    "enable",
    "disable",
    "kill",
    "power",
    "bring",
    "go",
    "change",
    "adjust",
    "boost",
    "halt",
    "dock",
    "return",
    "mow",
    "vacuum",
    "clean",
    "lift",
    "drop",
    "crank",
    "cut",
    "give",
    "let",
    "get",
    "trigger",
    "fire",
    "launch",
    "begin",
    "restart",
    "unpause",
    "hit",
];

/// Whether a word starts a request ("lock" in "close the garage door, lock the front door").
pub fn starts_request(word: &str) -> bool {
    matches!(
        word,
        "turn"
            | "switch"
            | "set"
            | "open"
            | "close"
            | "shut"
            | "lock"
            | "unlock"
            | "start"
            | "stop"
            | "pause"
            | "resume"
            | "play"
            | "mute"
            | "unmute"
            | "dim"
            | "raise"
            | "lower"
            | "activate"
            | "deactivate"
            | "dock"
    )
}

/// Subjects that have nothing to do with devices: a sentence about them is not a request to one.
const NOT_DEVICE_TOPICS: &[&str] = &[
    "timer",
    "timers",
    "alarm",
    "alarms",
    "reminder",
    "reminders",
    "remind",
    "stopwatch",
    "countdown",
    "weather",
    "forecast",
    "rain",
    "joke",
    "jokes",
    "news",
    "recipe",
    "calendar",
    "appointment",
    "meeting",
    "list",
    "groceries",
    "grocery",
    "spell",
    "translate",
];

/// Phrases that are chit-chat, whole or at the start.
const CHIT_CHAT: &[&[&str]] = &[
    &["thank", "you"],
    &["thanks"],
    &["hello"],
    &["hi"],
    &["hey"],
    &["good", "morning"],
    &["good", "evening"],
    &["good", "afternoon"],
    &["never", "mind"],
    &["nevermind"],
    &["forget", "it"],
    &["cancel", "that"],
    &["sorry"],
    &["ok"],
    &["okay"],
    &["yes"],
    &["no"],
    &["bye"],
    &["goodbye"],
    &["what", "time"],
    &["i", "love"],
    &["i", "am"],
    &["im"],
    &["you", "are"],
    &["youre"],
    &["sing"],
    &["help"],
    &["who", "are"],
    &["testing"],
];

/// Words that negate a request: nothing is done.
const NEGATIONS: &[&str] = &["dont", "not", "never", "nothing", "cant", "wont", "shouldnt", "no"];

/// Whether the words are no request to a device: a question, a timer, a list,
/// chit-chat, a negation. `names_device` says whether a catalog name was
/// found verbatim (then chit-chat openers do not count); `outside` are the
/// words outside every catalog name and place (a topic word inside one, as in
/// "the meeting room" or "the alarm light", does not count).
pub fn not_a_command(words: &[String], raw: &str, names_device: bool, outside: &[String]) -> Option<Refusal> {
    let first = words.first().map(String::as_str).unwrap_or("");
    let has = |w: &str| words.iter().any(|x| x == w);
    let starts = |phrase: &[&str]| words.len() >= phrase.len() && phrase.iter().zip(words).all(|(p, w)| *p == w);
    let polite = polite_request(words);
    if !polite {
        if QUESTION_STARTS.contains(&first)
            && !(first == "do" && words.get(1).is_some_and(|w| REQUEST_VERBS.contains(&w.as_str())))
        {
            return Some(Refusal::new(NoCommandReason::Question, "a question, not a request"));
        }
        if starts(&["can", "you", "tell"]) || starts(&["i", "wonder"]) || starts(&["do", "you", "know"]) {
            return Some(Refusal::new(NoCommandReason::Question, "a question, not a request"));
        }
        if raw.trim_end().ends_with('?') && !REQUEST_VERBS.contains(&first) {
            return Some(Refusal::new(NoCommandReason::Question, "a question, not a request"));
        }
    }
    if let Some(topic) = outside.iter().find(|w| NOT_DEVICE_TOPICS.contains(&w.as_str())) {
        return Some(Refusal::new(
            NoCommandReason::NotACommand,
            format!("'{topic}' is not something hearken controls"),
        ));
    }
    if !names_device && CHIT_CHAT.iter().any(|phrase| starts(phrase)) && words.len() <= 6 {
        return Some(Refusal::new(NoCommandReason::NotACommand, "not a request to a device"));
    }
    if NEGATIONS.iter().any(|n| has(n)) {
        return Some(Refusal::new(NoCommandReason::NotACommand, "a negated request: nothing to do"));
    }
    // "and mute the tv" / "i mute the tv" is how whisper hears "unmute the tv" (two Kokoro
    // voices and Piper's joe): the opposite action. A request that starts with such a word
    // before a verb whose opposite is un+verb may have lost its first sound.
    if CLIPPED_UN.contains(&first) && words.get(1).is_some_and(|w| UN_VERBS.contains(&w.as_str())) {
        return Some(Refusal::new(
            NoCommandReason::Ambiguous,
            format!("heard '{first} {}': it may have been 'un{}'", words[1], words[1]),
        ));
    }
    if starts(&["wake", "me"]) || starts(&["wake", "us"]) {
        return Some(Refusal::new(NoCommandReason::NotACommand, "an alarm is not something hearken controls"));
    }
    // "i turned the heating off yesterday": a report of what was done, not a request.
    let someone = matches!(first, "i" | "we" | "you" | "he" | "she" | "they" | "someone" | "somebody");
    let past = words.get(1).is_some_and(|w| PAST_VERBS.contains(&w.as_str()));
    let last_time = words.windows(2).any(|pair| pair[0] == "last" && LAST_TIMES.contains(&pair[1].as_str()));
    if (someone && past) || PAST_TIMES.iter().any(|t| has(t)) || last_time {
        return Some(Refusal::new(NoCommandReason::NotACommand, "a statement about the past, not a request"));
    }
    None
}

/// Past forms of request verbs: "i turned …", "we left …" report, they do not ask.
const PAST_VERBS: &[&str] = &[
    "turned", "switched", "left", "opened", "closed", "shut", "locked", "unlocked", "started", "stopped", "paused",
    "played", "set", "put", "forgot",
];

/// What whisper makes of a lost "un" ("and mute", "i mute", "a mute" for "unmute").
const CLIPPED_UN: &[&str] = &["and", "i", "a", "an", "in", "on", "um", "uh"];

/// Verbs whose opposite is the same verb with "un" ("unmute", "unpause"); "and lock" is
/// repaired to "unlock" when the words are normalized (unlocking waits for confirmation).
const UN_VERBS: &[&str] = &["mute", "pause"];

/// Words that place a sentence in the past.
const PAST_TIMES: &[&str] = &["yesterday", "ago", "earlier"];

/// After "last", the times that place a sentence in the past ("last night").
const LAST_TIMES: &[&str] = &["night", "week", "weekend", "month", "year", "time", "evening", "winter", "summer"];

/// "can you …", "could you please …", "would you …", "will you …" followed by a request verb.
fn polite_request(words: &[String]) -> bool {
    let openers: &[&[&str]] = &[&["can", "you"], &["could", "you"], &["would", "you"], &["will", "you"], &["can", "u"]];
    openers.iter().any(|opener| {
        words.len() > opener.len()
            && opener.iter().zip(words).all(|(o, w)| *o == w)
            && words[opener.len()..].iter().take(2).any(|w| REQUEST_VERBS.contains(&w.as_str()))
    })
}

/// What a setting refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// Light level.
    Brightness,
    /// Set point.
    Temperature,
    /// Loudness.
    Volume,
    /// How far a cover is open.
    Position,
    /// Fan or motor speed.
    Speed,
    /// White tone of a light.
    ColorTemp,
}

impl Attribute {
    /// Parts of action names that are this attribute ("set_brightness", "volume_up").
    fn action_words(self) -> &'static [&'static str] {
        match self {
            Attribute::Brightness => &["brightness", "level", "dim", "brighten"],
            Attribute::Temperature => &["temperature", "temp", "setpoint", "heat"],
            Attribute::Volume => &["volume"],
            Attribute::Position => &["position"],
            Attribute::Speed => &["speed", "percentage"],
            Attribute::ColorTemp => &["color_temp", "colour_temp", "color_temperature", "white"],
        }
    }

    /// The word for messages.
    fn name(self) -> &'static str {
        match self {
            Attribute::Brightness => "brightness",
            Attribute::Temperature => "temperature",
            Attribute::Volume => "volume",
            Attribute::Position => "position",
            Attribute::Speed => "speed",
            Attribute::ColorTemp => "colour temperature",
        }
    }
}

/// A value as said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// A number, in the device's own unit unless `percent`.
    Number {
        /// The number.
        value: i64,
        /// Said as a percentage ("50 percent").
        percent: bool,
    },
    /// "max", "full", "all the way".
    Max,
    /// "min", "lowest".
    Min,
    /// "half", "halfway".
    Half,
}

/// What the words ask for, before any device is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Turn on, switch on, power up, activate.
    On,
    /// Turn off, switch off, deactivate.
    Off,
    /// Open (a cover, a valve).
    Open,
    /// Close, shut.
    Close,
    /// Lock.
    Lock,
    /// Unlock.
    Unlock,
    /// Start (a machine, a vacuum, a mower).
    Start,
    /// Stop (never an emergency stop).
    Stop,
    /// Emergency stop (never a plain stop).
    EmergencyStop,
    /// Pause.
    Pause,
    /// Resume, continue, unpause, play.
    Resume,
    /// Next track.
    Next,
    /// Previous track ("back", "the one before").
    Previous,
    /// Mute.
    Mute,
    /// Unmute.
    Unmute,
    /// Back to the dock or base.
    Dock,
    /// More of an attribute ("louder", "turn it up", "brighter").
    Up(Option<Attribute>),
    /// Less of an attribute ("quieter", "turn the volume down", "dimmer").
    Down(Option<Attribute>),
    /// An attribute to a value.
    Set(Option<Attribute>, Amount),
}

/// The attribute the words name, if any.
pub fn attribute(words: &[String]) -> Option<Attribute> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let has_prefix = |p: &str| words.iter().any(|x| x.starts_with(p));
    if has("volume") || has("louder") || has("quieter") || has("softer") || has("loud") || has("quiet") || has("sound")
    {
        return Some(Attribute::Volume);
    }
    if (has("color") || has("colour")) && has("temperature") || has("white") {
        return Some(Attribute::ColorTemp);
    }
    if has("temperature")
        || has("degrees")
        || has("degree")
        || has("celsius")
        || has("fahrenheit")
        || has_prefix("warm")
        || has_prefix("cool")
        || has("hotter")
        || has("colder")
        || has("heat")
        || has("heating")
    {
        return Some(Attribute::Temperature);
    }
    if has_prefix("bright") || has_prefix("dim") || has("level") {
        return Some(Attribute::Brightness);
    }
    if has("speed") || has("faster") || has("slower") {
        return Some(Attribute::Speed);
    }
    if has("position") || has("halfway") {
        return Some(Attribute::Position);
    }
    None
}

/// The value the words set: a number after "to"/"at" or before a unit, else
/// the last number; "max", "min", "half".
pub fn amount(words: &[String]) -> Option<Amount> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<i64>().ok());
    let percent_after = |i: usize| words.get(i + 1).is_some_and(|w| w == "percent" || w == "per");
    let marked = (0..words.len()).find(|&i| {
        number(i).is_some()
            && (i > 0 && matches!(words[i - 1].as_str(), "to" | "at" | "by")
                || words
                    .get(i + 1)
                    .is_some_and(|w| matches!(w.as_str(), "percent" | "per" | "degrees" | "degree" | "bar")))
    });
    let index = marked.or_else(|| (0..words.len()).rev().find(|&i| number(i).is_some()));
    if let Some(i) = index {
        // "the one before" is no value.
        let is_one_before = number(i) == Some(1) && words.get(i + 1).is_some_and(|w| w == "before");
        if !is_one_before {
            return number(i).map(|value| Amount::Number { value, percent: percent_after(i) });
        }
    }
    if has("max")
        || has("maximum")
        || has("full")
        || has("fully")
        || has("highest")
        || (has("all") && has("way") && has("up"))
    {
        return Some(Amount::Max);
    }
    if has("min") || has("minimum") || has("lowest") || (has("all") && has("way") && has("down")) {
        return Some(Amount::Min);
    }
    if has("half") || has("halfway") {
        return Some(Amount::Half);
    }
    None
}

/// The verb of a clause, from its words; `None` when plain words do not say
/// (the model may then choose among what the words leave possible).
pub fn verb(words: &[String]) -> Option<Verb> {
    let has = |w: &str| words.iter().any(|x| x == w);
    let pair = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    let attr = attribute(words);
    if has("emergency") || has("estop") || pair("e", "stop") {
        return Some(Verb::EmergencyStop);
    }
    if has("unlock") {
        return Some(Verb::Unlock);
    }
    if has("lock") && !has("unlock") && words.first().is_some_and(|w| w == "lock")
        || pair("lock", "the")
        || pair("lock", "up")
    {
        return Some(Verb::Lock);
    }
    if has("unmute") {
        return Some(Verb::Unmute);
    }
    if has("mute") {
        return Some(Verb::Mute);
    }
    if has("resume") || has("unpause") || has("continue") || pair("carry", "on") || pair("keep", "playing") {
        return Some(Verb::Resume);
    }
    if has("pause") {
        return Some(Verb::Pause);
    }
    let about_tracks = has("track") || has("song") || has("tracks") || has("songs");
    if has("back") && about_tracks {
        return Some(Verb::Previous);
    }
    if has("previous")
        || pair("go", "back")
        || pair("back", "a")
        || pair("skip", "back")
        || has("rewind")
        || has("before")
        || (has("last") && (has("song") || has("track")))
    {
        return Some(Verb::Previous);
    }
    if has("next") || has("skip") || pair("go", "forward") {
        return Some(Verb::Next);
    }
    if has("dock")
        || pair("go", "home")
        || pair("back", "to")
        || pair("return", "to")
        || has("recharge")
        || (has("home") || has("base")) && (has("send") || has("go") || has("return") || has("back"))
        || pair("go", "charge")
    {
        return Some(Verb::Dock);
    }
    let off = has("off")
        || pair("turn", "of")
        || pair("switch", "of")
        || has("deactivate")
        || has("disable")
        || has("kill")
        || pair("shut", "down")
        || pair("power", "down")
        || pair("cut", "the");
    let relative_up = has("up")
        || has("increase")
        || has("raise")
        || has("higher")
        || has("louder")
        || has("brighter")
        || has("warmer")
        || has("hotter")
        || has("more")
        || has("boost")
        || has("lift");
    let relative_down = has("down")
        || has("decrease")
        || has("lower")
        || has("reduce")
        || has("quieter")
        || has("softer")
        || has("dimmer")
        || has("dim")
        || has("cooler")
        || has("colder")
        || has("less")
        || has("drop");
    // A value: the setting, whatever the verb ("turn the lights on to 50 percent", "lower the
    // blinds halfway"); but "off" with "full" or "half" (a misheard word) is off.
    match amount(words) {
        Some(amount @ Amount::Number { .. }) => return Some(Verb::Set(attr, amount)),
        Some(amount) if !off => return Some(Verb::Set(attr, amount)),
        _ => {}
    }
    if off && !relative_up {
        return Some(Verb::Off);
    }
    if has("open") {
        return Some(Verb::Open);
    }
    if has("close") || has("shut") {
        return Some(Verb::Close);
    }
    if relative_up && !relative_down {
        return Some(Verb::Up(attr));
    }
    if relative_down && !relative_up && !off {
        return Some(Verb::Down(attr));
    }
    if has("stop") || has("halt") {
        return Some(Verb::Stop);
    }
    let switched_on = words.iter().enumerate().any(|(i, w)| {
        w == "on"
            && (i + 1 == words.len()
                || i > 0
                    && matches!(
                        words[i - 1].as_str(),
                        "turn" | "switch" | "power" | "lights" | "light" | "it" | "them"
                    ))
            || w == "on"
                && words.get(i + 1).is_some_and(|n| {
                    matches!(n.as_str(), "the" | "all" | "my" | "in" | "everything" | "for" | "now" | "again" | "too")
                })
            // "turn the night light on for me": the name is not among the clause's own words.
            || w == "on" && i > 0 && words[i - 1] == "the"
    });
    // "play something on the kitchen speaker": the "on" is where, not the verb.
    if has("play") && !has("turn") && !has("switch") {
        return Some(Verb::Resume);
    }
    if switched_on || has("activate") || has("enable") || pair("power", "up") {
        return Some(Verb::On);
    }
    if has("start")
        || has("begin")
        || has("run")
        || has("launch")
        || has("trigger")
        || has("mow")
        || has("clean")
        || has("boil")
        || has("brew")
    {
        return Some(Verb::Start);
    }
    if pair("too", "dark") {
        return Some(Verb::On);
    }
    None
}

/// A verb in words, for explanations ("the garage door cannot lock").
pub fn describe(verb: Verb) -> String {
    match verb {
        Verb::On => "turn on".into(),
        Verb::Off => "turn off".into(),
        Verb::Open => "open".into(),
        Verb::Close => "close".into(),
        Verb::Lock => "lock".into(),
        Verb::Unlock => "unlock".into(),
        Verb::Start => "start".into(),
        Verb::Stop => "stop".into(),
        Verb::EmergencyStop => "emergency stop".into(),
        Verb::Pause => "pause".into(),
        Verb::Resume => "resume".into(),
        Verb::Next => "skip to the next track".into(),
        Verb::Previous => "go back a track".into(),
        Verb::Mute => "mute".into(),
        Verb::Unmute => "unmute".into(),
        Verb::Dock => "return to its dock".into(),
        Verb::Up(a) => format!("turn {} up", a.map_or("it", Attribute::name)),
        Verb::Down(a) => format!("turn {} down", a.map_or("it", Attribute::name)),
        Verb::Set(a, _) => format!("set {}", a.map_or("a value", Attribute::name)),
    }
}

/// What a verb means for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// This action, with this value.
    Command(String, Option<i64>),
    /// The device cannot do what the words say.
    Unsupported,
    /// The words leave a choice among the device's settings (the model may choose).
    Open,
}

/// What `verb` means for `device`, given the clause's `words` (they name a
/// setting when the device has several: "press 1 pressure to 200").
pub fn resolve(device: &Device, verb: Verb, words: &[String]) -> Resolution {
    if let Some((action, value)) = action_for(device, verb) {
        return Resolution::Command(action, value);
    }
    // "lower the projector screen": a device of no known kind may have its own
    // sense of up and down; the model chooses, the opposite sense ruled out.
    if matches!(verb, Verb::Up(None) | Verb::Down(None)) && device.kind.is_none() {
        return Resolution::Open;
    }
    if let Verb::Set(attr, amount) = verb {
        let valued: Vec<&String> = device.actions.iter().filter(|a| device.param(a).is_some()).collect();
        let named: Vec<&String> = valued
            .iter()
            .copied()
            .filter(|action| action.split('_').any(|part| part != "set" && words.iter().any(|w| w == part)))
            .collect();
        if let [action] = named.as_slice() {
            return match device.param(action).and_then(|range| native_value(range, amount)) {
                Some(value) => Resolution::Command((*action).clone(), Some(value)),
                None => Resolution::Unsupported,
            };
        }
        if attr.is_none() && valued.len() > 1 {
            return Resolution::Open;
        }
    }
    Resolution::Unsupported
}

/// The action (and value) of `device` that `verb` means, or `None` when the
/// device cannot do it. Never an action of the opposite sense.
pub fn action_for(device: &Device, verb: Verb) -> Option<(String, Option<i64>)> {
    let has = |a: &str| device.has_action(a) && device.param(a).is_none();
    let pick = |candidates: &[&str]| candidates.iter().find(|a| has(a)).map(|a| ((*a).to_owned(), None));
    let media = device.kind == Some(Kind::MediaPlayer);
    let cover = matches!(device.kind, Some(Kind::Cover));
    let valve = device.kind == Some(Kind::Valve);
    let scene = matches!(device.kind, Some(Kind::Scene | Kind::Script));
    match verb {
        Verb::On => {
            pick(if scene { &["activate", "turn_on", "run"] } else { &["turn_on", "activate", "power_on", "enable"] })
                .or_else(|| if valve { pick(&["open"]) } else { None })
                .or_else(|| {
                    if matches!(device.kind, Some(Kind::Vacuum | Kind::LawnMower)) {
                        pick(&["start"])
                    } else {
                        None
                    }
                })
        }
        Verb::Off => pick(&["turn_off", "deactivate", "power_off", "disable"])
            .or_else(|| if valve { pick(&["close"]) } else { None })
            .or_else(
                || if matches!(device.kind, Some(Kind::Vacuum | Kind::LawnMower)) { pick(&["stop"]) } else { None },
            )
            .or_else(|| if media { pick(&["pause", "stop"]) } else { None }),
        Verb::Open => pick(&["open"]).or_else(|| if valve { pick(&["turn_on"]) } else { None }),
        Verb::Close => pick(&["close"]).or_else(|| if valve { pick(&["turn_off"]) } else { None }),
        Verb::Lock => pick(&["lock"]),
        Verb::Unlock => pick(&["unlock"]),
        Verb::Start => pick(&["start", "start_mowing", "clean", "run"]).or_else(|| {
            if media {
                pick(&["play"])
            } else if valve {
                pick(&["open", "turn_on"])
            } else {
                pick(&["turn_on"])
            }
        }),
        Verb::Stop => pick(&["stop"])
            .or_else(|| {
                if media || matches!(device.kind, Some(Kind::Vacuum | Kind::LawnMower)) {
                    pick(&["pause"])
                } else {
                    None
                }
            })
            .or_else(|| if cover { None } else { pick(&["turn_off"]) })
            .or_else(|| if valve { pick(&["close"]) } else { None }),
        Verb::EmergencyStop => pick(&["emergency_stop", "estop", "e_stop"]),
        Verb::Pause => pick(&["pause"]),
        Verb::Resume => pick(&["play", "resume", "unpause"]),
        Verb::Next => pick(&["next_track", "next"]),
        Verb::Previous => pick(&["previous_track", "previous", "prev_track"]),
        Verb::Mute => pick(&["mute"]),
        Verb::Unmute => pick(&["unmute"]),
        Verb::Dock => pick(&["return_to_dock", "dock", "return_to_base", "return_home"]),
        Verb::Up(attr) => {
            if cover && attr.is_none_or(|a| a == Attribute::Position) {
                return pick(&["open"]);
            }
            relative(device, attr, true)
        }
        Verb::Down(attr) => {
            if cover && attr.is_none_or(|a| a == Attribute::Position) {
                return pick(&["close"]);
            }
            relative(device, attr, false)
        }
        Verb::Set(attr, amount) => setting(device, attr, amount),
    }
}

/// A stepping action ("volume_up", "brightness_down", "increase_speed").
fn relative(device: &Device, attr: Option<Attribute>, up: bool) -> Option<(String, Option<i64>)> {
    let direction: &[&str] = if up {
        &["up", "increase", "raise", "brighten", "louder"]
    } else {
        &["down", "decrease", "lower", "dim", "quieter"]
    };
    let matches_attr = |action: &str| match attr {
        Some(a) => {
            a.action_words().iter().any(|w| action.contains(w))
                || (a == Attribute::Brightness && matches!(action, "brighten" | "dim"))
        }
        // No attribute named: the device's only stepping action of that direction.
        None => true,
    };
    let candidates: Vec<&String> = device
        .actions
        .iter()
        .filter(|a| device.param(a).is_none())
        .filter(|a| a.split('_').any(|part| direction.contains(&part)) || direction.contains(&a.as_str()))
        .filter(|a| matches_attr(a))
        .collect();
    match candidates.as_slice() {
        [one] => Some(((*one).clone(), None)),
        _ => None,
    }
}

/// The setting action for an attribute and the value in the device's own range.
fn setting(device: &Device, attr: Option<Attribute>, amount: Amount) -> Option<(String, Option<i64>)> {
    let valued: Vec<&String> = device.actions.iter().filter(|a| device.param(a).is_some()).collect();
    let chosen: Vec<&String> = match attr {
        Some(a) => {
            valued.iter().copied().filter(|action| a.action_words().iter().any(|w| action.contains(w))).collect()
        }
        // "the lamp to 50 percent" is its brightness, though it has a colour temperature too.
        None => match primary_attribute(device.kind) {
            Some(a) if valued.len() > 1 => {
                let primary: Vec<&String> = valued
                    .iter()
                    .copied()
                    .filter(|action| a.action_words().iter().any(|w| action.contains(w)))
                    .collect();
                if primary.len() == 1 {
                    primary
                } else {
                    valued.clone()
                }
            }
            _ => valued.clone(),
        },
    };
    // A cover's only setting is its position; "set the blinds to 40" needs no attribute word.
    let action = match (attr, chosen.as_slice()) {
        (_, [one]) => (*one).clone(),
        (Some(Attribute::Position), []) => return None,
        _ => return None,
    };
    let range = device.param(&action)?;
    let value = native_value(range, amount)?;
    Some((action, Some(value)))
}

/// The setting a bare value means for a kind ("the lamp to 50 percent").
fn primary_attribute(kind: Option<Kind>) -> Option<Attribute> {
    match kind? {
        Kind::Light => Some(Attribute::Brightness),
        Kind::Cover => Some(Attribute::Position),
        Kind::MediaPlayer => Some(Attribute::Volume),
        Kind::Fan => Some(Attribute::Speed),
        Kind::Climate => Some(Attribute::Temperature),
        _ => None,
    }
}

/// A value in the device's own range: percentages scaled to a range that is
/// not a percentage (a Zigbee lamp's 0–254), "max"/"min"/"half" from the
/// range; `None` when the value is outside it.
pub fn native_value(range: &ParamRange, amount: Amount) -> Option<i64> {
    let span = range.max - range.min;
    let is_percent_range = range.unit.as_deref() == Some("percent") || (range.min == 0 && range.max == 100);
    let value = match amount {
        Amount::Max => range.max,
        Amount::Min => range.min,
        Amount::Half => range.min + (span + 1) / 2,
        // A percentage of a temperature or a pressure means nothing.
        Amount::Number { percent: true, .. } if range.unit.as_deref().is_some_and(|u| u != "percent") => return None,
        Amount::Number { value, percent } if percent && !is_percent_range => {
            if !(0..=100).contains(&value) {
                return None;
            }
            range.min + (span * value + 50) / 100
        }
        Amount::Number { value, .. } => value,
    };
    (range.min..=range.max).contains(&value).then_some(value)
}

/// Which kind a word names (plurals included), if any.
pub fn kind_of_word(word: &str) -> Option<Kind> {
    let singular = word
        .strip_suffix("es")
        .filter(|s| s.ends_with("ch") || s.ends_with("sh"))
        .or_else(|| word.strip_suffix('s'))
        .filter(|s| s.len() >= 2)
        .unwrap_or(word);
    Kind::ALL.into_iter().find(|k| k.words().iter().any(|w| *w == singular || *w == word))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::intent::normalize::normalize;

    fn v(text: &str) -> Option<Verb> {
        verb(&normalize(text))
    }

    #[test]
    fn polarity_follows_the_words_not_the_device() {
        assert_eq!(v("lights off in zone b"), Some(Verb::Off));
        assert_eq!(v("turn the volume down"), Some(Verb::Down(Some(Attribute::Volume))));
        assert_eq!(v("turn it up"), Some(Verb::Up(None)));
        assert_eq!(v("resume the music"), Some(Verb::Resume));
        assert_eq!(v("go back a song"), Some(Verb::Previous));
        assert_eq!(v("play the one before"), Some(Verb::Previous));
        assert_eq!(v("skip this song"), Some(Verb::Next));
        assert_eq!(v("lower the blinds halfway"), Some(Verb::Set(Some(Attribute::Position), Amount::Half)));
        assert_eq!(v("raise the blinds"), Some(Verb::Up(None)));
        assert_eq!(v("make it warmer"), Some(Verb::Up(Some(Attribute::Temperature))));
        assert_eq!(v("emergency stop the press"), Some(Verb::EmergencyStop));
        assert_eq!(v("stop the press"), Some(Verb::Stop));
        assert_eq!(v("switch on the kitchen lights"), Some(Verb::On));
        assert_eq!(v("kitchen lights on"), Some(Verb::On));
        assert_eq!(v("set the lamp to 50 percent"), Some(Verb::Set(None, Amount::Number { value: 50, percent: true })));
        assert_eq!(v("would you turn the on for me"), Some(Verb::On));
        assert_eq!(v("on now"), Some(Verb::On));
        assert_eq!(v("the start it"), Some(Verb::Start));
        assert_eq!(v("back to base"), Some(Verb::Dock));
        assert_eq!(v("play something on the kitchen speaker"), Some(Verb::Resume));
        assert_eq!(v("turn on the play room light"), Some(Verb::On));
    }

    #[test]
    fn questions_timers_and_chit_chat_are_not_requests() {
        let refused = |text: &str| not_a_command(&normalize(text), text, false, &normalize(text)).map(|r| r.reason);
        assert_eq!(refused("hows the heating doing"), Some(NoCommandReason::Question));
        assert_eq!(refused("any windows open?"), Some(NoCommandReason::Question));
        assert_eq!(refused("the kitchen light is on?"), Some(NoCommandReason::Question));
        assert_eq!(refused("pause the timer"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("stop the oven timer"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("add milk to the shopping list"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("thank you"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("dont turn on the light"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("can you turn on the light?"), None);
        assert_eq!(refused("could you please close the blinds"), None);
        assert_eq!(refused("turn on the porch light"), None);
        assert_eq!(refused("i turn off the porch light last night"), Some(NoCommandReason::NotACommand));
        assert_eq!(refused("and mute the tv"), Some(NoCommandReason::Ambiguous));
        assert_eq!(refused("and pause the music"), Some(NoCommandReason::Ambiguous));
        assert_eq!(refused("i mute the tv"), Some(NoCommandReason::Ambiguous));
        assert_eq!(refused("mute the tv"), None);
        assert_eq!(refused("turn off the porch light last"), None);
    }

    #[test]
    fn percentages_scale_to_the_native_range() {
        let zigbee = ParamRange { min: 0, max: 254, unit: None };
        assert_eq!(native_value(&zigbee, Amount::Number { value: 50, percent: true }), Some(127));
        assert_eq!(native_value(&zigbee, Amount::Number { value: 100, percent: true }), Some(254));
        assert_eq!(native_value(&zigbee, Amount::Number { value: 200, percent: false }), Some(200));
        assert_eq!(native_value(&zigbee, Amount::Max), Some(254));
        let percent = ParamRange { min: 0, max: 100, unit: Some("percent".into()) };
        assert_eq!(native_value(&percent, Amount::Number { value: 50, percent: true }), Some(50));
        assert_eq!(native_value(&percent, Amount::Half), Some(50));
        assert_eq!(native_value(&percent, Amount::Number { value: 150, percent: false }), None);
        let celsius = ParamRange { min: 10, max: 30, unit: Some("celsius".into()) };
        assert_eq!(native_value(&celsius, Amount::Number { value: 50, percent: true }), None);
        assert_eq!(native_value(&celsius, Amount::Number { value: 21, percent: false }), Some(21));
    }

    fn catalog(name: &str) -> crate::catalog::Catalog {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices").join(name);
        crate::catalog::Catalog::load(&path).unwrap()
    }

    /// Resolves with the words outside device names, as the planner does.
    fn action(catalog_name: &str, id: &str, text: &str) -> Resolution {
        let catalog = catalog(catalog_name);
        let words = normalize(text);
        let names = crate::intent::linker::Linker::new(&catalog).find(&words);
        let outside: Vec<String> = (0..words.len())
            .filter(|i| !names.iter().any(|m| m.start <= *i && *i < m.end))
            .map(|i| words[i].clone())
            .collect();
        let device = catalog.device(id).unwrap();
        match verb(&outside) {
            Some(verb) => resolve(device, verb, &outside),
            None => Resolution::Open,
        }
    }

    fn cmd(action: &str, value: Option<i64>) -> Resolution {
        Resolution::Command(action.into(), value)
    }

    #[test]
    fn plain_words_settle_plain_actions() {
        assert_eq!(action("home.toml", "kitchen_light", "switch off the kitchen lights"), cmd("turn_off", None));
        assert_eq!(action("home.toml", "coffee_machine", "start the coffee machine"), cmd("turn_on", None));
        assert_eq!(action("factory.toml", "kiln", "stop the kiln"), cmd("turn_off", None));
        assert_eq!(action("factory.toml", "conveyor_2", "stop conveyor two"), cmd("stop", None));
        assert_eq!(action("home.toml", "living_room_lamp", "turn of the lamp"), cmd("turn_off", None));
    }

    #[test]
    fn numbers_pick_the_named_or_only_setting() {
        assert_eq!(action("home.toml", "thermostat", "make it 19 degrees"), cmd("set_temperature", Some(19)));
        assert_eq!(
            action("home.toml", "kitchen_light", "kitchen light colour temperature to 300"),
            cmd("set_color_temp", Some(300))
        );
        assert_eq!(action("factory.toml", "conveyor_1", "slow conveyor one down to 25"), cmd("set_speed", Some(25)));
        // Out of range: refused, never clamped.
        assert_eq!(action("home.toml", "thermostat", "thermostat to 95"), Resolution::Unsupported);
        // Degrees are a temperature: the blinds have none.
        assert_eq!(action("home.toml", "living_room_blinds", "set the blinds to 20 degrees"), Resolution::Unsupported);
        // Half of a Zigbee lamp's 0–254.
        assert_eq!(
            action("home.toml", "living_room_lamp", "set the lamp to 50 percent"),
            cmd("set_brightness", Some(127))
        );
    }

    #[test]
    fn a_verb_the_device_cannot_do_is_unsupported_and_unknown_ones_are_open() {
        assert_eq!(action("home.toml", "garage_door", "lock the garage door"), Resolution::Unsupported);
        assert_eq!(action("office.toml", "projector_screen", "lower the projector screen"), Resolution::Open);
        assert_eq!(action("home.toml", "tv", "turn the tv volume down"), Resolution::Unsupported);
    }

    #[test]
    fn kind_words_include_plurals() {
        assert_eq!(kind_of_word("lights"), Some(Kind::Light));
        assert_eq!(kind_of_word("blinds"), Some(Kind::Cover));
        assert_eq!(kind_of_word("switches"), Some(Kind::Switch));
        assert_eq!(kind_of_word("music"), Some(Kind::MediaPlayer));
        assert_eq!(kind_of_word("kitchen"), None);
    }
}
