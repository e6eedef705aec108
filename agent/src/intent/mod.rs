//! The intent stage: a transcript in, zero or more catalog-validated
//! commands out.
//!
//! 1. [`normalize`]: lowercase words, fillers dropped, numbers as digits.
//! 2. Questions ("is the door locked", "what's on tv") are not commands.
//! 3. [`linker`]: devices and areas the words name, fuzzily (recognizer
//!    near-misses included); failing that, devices whose actions the words
//!    name ("skip to the next track"). No candidate device → no command,
//!    and the model is not asked.
//! 4. [`resolve`]: per clause, plain words settle plain actions ("off",
//!    "stop", "21 degrees"). Only devices whose action the words do not
//!    settle go to the model: it gets the catalog (a cached prompt prefix),
//!    the request with matched names written as the catalog spells them, and
//!    a schema that allows only those devices, their actions and the numbers
//!    the request contains ([`schema::utterance_schema`]).
//! 5. Every command in the reply is validated against the catalog again; a
//!    reply that fails is refused as a whole with the reason.

mod client;
pub(crate) mod linker;
pub(crate) mod normalize;
mod prompt;
pub(crate) mod resolve;
mod schema;

pub use client::{ChatClient, ChatError, ChatParams, ChatReply, Message};
pub use schema::{command_schema, utterance_schema};

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::catalog::{Catalog, Device};
use crate::catalog::{Command, CommandError};
use crate::config::MAX_COMMANDS_CEILING;
use linker::{Linker, Target};

/// Errors of the intent stage.
#[derive(Debug, thiserror::Error)]
pub enum NluError {
    /// The engine could not be asked.
    #[error(transparent)]
    Engine(#[from] ChatError),
    /// The model's reply is not the JSON the schema asks for.
    #[error("model reply refused: not the expected JSON ({reason}): {reply}")]
    Malformed {
        /// Why.
        reason: String,
        /// The reply as received.
        reply: String,
    },
    /// The reply commands a device the utterance did not leave to the model.
    #[error("model reply refused: device '{device}' was not one the request left open: {reply}")]
    NotAsked {
        /// The device.
        device: String,
        /// The reply as received.
        reply: String,
    },
    /// The utterance yields more commands than `limits.max_commands` allows: refused whole.
    #[error("{count} commands in one utterance; limits.max_commands is {max}")]
    TooManyCommands {
        /// Commands the utterance yielded.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The reply names a command the catalog does not allow.
    #[error("model reply refused: {source}: {reply}")]
    Invalid {
        /// The catalog's verdict.
        source: CommandError,
        /// The reply as received.
        reply: String,
    },
}

/// What the interpreter made of one utterance.
#[derive(Debug, Clone, Serialize)]
pub struct Interpretation {
    /// The text as given.
    pub text: String,
    /// Validated commands, in the order spoken.
    pub commands: Vec<Command>,
    /// The commands that wait for confirmation (a subset of `commands`).
    pub needs_confirmation: Vec<Command>,
    /// Why there is no command, when there is none: `empty`, `question`, `no_device`, `ambiguous`, `no_action`, `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_command_reason: Option<&'static str>,
    /// Transcript in → commands out.
    #[serde(skip)]
    pub latency: Duration,
    /// Whether the model was asked.
    #[serde(skip)]
    pub asked_model: bool,
    /// The model's reply, when it was asked (token counts for benchmarks).
    #[serde(skip)]
    pub model: Option<client::ChatReply>,
}

/// What interpreting an utterance will involve (see [`Interpreter::preview`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// The catalog devices the words name, by id, in order.
    pub devices: Vec<String>,
    /// Whether the words leave something for the model.
    pub asks_model: bool,
}

/// Words that make an utterance a question when they come first.
const QUESTION_WORDS: &[&str] = &[
    "is", "are", "was", "were", "what", "whats", "who", "whos", "when", "where", "why", "how", "which", "does", "did",
    "do", "has", "have", "should", "shall",
];

/// Words that ask for a change. An utterance that names a device but none of
/// these, none of the device's own action words and no value ("the printer
/// is out of paper", "book the meeting room for three") is not a command.
const CONTROL_WORDS: &[&str] = &[
    "turn",
    "switch",
    "set",
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
    "mute",
    "unmute",
    "dim",
    "brighten",
    "raise",
    "lower",
    "put",
    "make",
    "skip",
    "send",
    "return",
    "clear",
    "kill",
    "activate",
    "deactivate",
    "enable",
    "disable",
    "run",
    "halt",
    "on",
    "off",
    "up",
    "down",
    "increase",
    "decrease",
    "reduce",
    "change",
    "adjust",
    "bring",
    "power",
    "restart",
    "begin",
    "slow",
    "speed",
    "boost",
];

/// Units that mark a number as a setting ("21 degrees", "50 percent").
const VALUE_UNITS: &[&str] = &["percent", "degrees", "degree", "celsius", "bar", "mired"];

/// Action words too generic to pick a device on their own.
const GENERIC_ACTION_WORDS: &[&str] = &["set", "turn", "to", "on", "off", "return", "open", "close", "start", "stop"];

/// How the interpreter talks to the model.
#[derive(Clone)]
pub struct InterpreterConfig {
    /// Constrain the reply with the per-utterance schema (on in production;
    /// off only to exercise the validation of an unconstrained reply).
    pub constrain: bool,
    /// Completion length limit.
    pub max_tokens: u32,
    /// Let plain words settle actions ("off" → turn_off) and ask the model only
    /// for the rest (on in production; off to measure the model alone).
    pub settle_by_words: bool,
    /// Most commands one utterance may yield (`limits.max_commands`); more refuse the utterance.
    pub max_commands: usize,
}

impl Default for InterpreterConfig {
    fn default() -> Self {
        InterpreterConfig { constrain: true, max_tokens: 160, settle_by_words: true, max_commands: 8 }
    }
}

/// Turns transcripts into commands for one catalog.
pub struct Interpreter {
    catalog: Catalog,
    linker: Linker,
    // Swapped when a supervised engine restarts on a new port and token.
    client: std::sync::RwLock<ChatClient>,
    config: InterpreterConfig,
}

impl Interpreter {
    /// An interpreter for `catalog` asking the model behind `client`.
    pub fn new(catalog: Catalog, client: ChatClient, config: InterpreterConfig) -> Interpreter {
        let linker = Linker::new(&catalog);
        Interpreter { catalog, linker, client: std::sync::RwLock::new(client), config }
    }

    /// Points the interpreter at another engine (a restarted one, or a fallback).
    pub fn set_client(&self, client: ChatClient) {
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    fn client(&self) -> ChatClient {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The catalog commands are validated against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Sends the catalog prompt once, so the engine has it cached before the
    /// first utterance (a daemon does this at startup; benchmarks before timing).
    pub async fn warm_up(&self) -> Result<(), NluError> {
        let first: Vec<&Device> = self.catalog.devices.iter().take(1).collect();
        let schema = schema::utterance_schema(&first, &[], 1);
        self.client().complete(&prompt::messages(&self.catalog, "turn it on"), Some(&schema), 32).await?;
        Ok(())
    }

    /// Interprets one utterance, asking the local engine when the words leave something open.
    pub async fn interpret(&self, text: &str) -> Result<Interpretation, NluError> {
        self.interpret_via(text, &self.client()).await
    }

    /// What interpreting `text` will involve, as far as the words tell
    /// (before any model): which devices it names — what a per-device privacy
    /// policy is checked against before the text may leave the box — and
    /// whether a model will be asked at all.
    pub fn preview(&self, text: &str) -> Preview {
        self.plan(text).preview(&self.catalog)
    }

    /// Plans one utterance from its words alone. The daemon plans once, routes
    /// on the plan's [`Planned::preview`], then interprets the same plan.
    pub fn plan(&self, text: &str) -> Planned {
        let started = Instant::now();
        let plan = self.plan_words(text);
        Planned { text: text.to_owned(), plan, took: started.elapsed() }
    }

    /// Finishes a plan with the local engine when the words leave something open.
    pub async fn interpret_planned(&self, planned: &Planned) -> Result<Interpretation, NluError> {
        self.interpret_planned_via(planned, &self.client()).await
    }

    /// Interprets one utterance, asking the model behind `client` (an online
    /// API, say) when the words leave something open. Its answer is validated
    /// against the catalog like the local engine's.
    pub async fn interpret_via(&self, text: &str, client: &ChatClient) -> Result<Interpretation, NluError> {
        self.interpret_planned_via(&self.plan(text), client).await
    }

    /// Finishes a plan, asking the model behind `client` when the words leave
    /// something open; every command is validated against the catalog.
    pub async fn interpret_planned_via(
        &self,
        planned: &Planned,
        client: &ChatClient,
    ) -> Result<Interpretation, NluError> {
        let started = Instant::now() - planned.took;
        let mut result = Interpretation {
            text: planned.text.clone(),
            commands: Vec::new(),
            needs_confirmation: Vec::new(),
            no_command_reason: None,
            latency: Duration::ZERO,
            asked_model: false,
            model: None,
        };
        let plan = match &planned.plan {
            Plan::NoCommand(reason) => {
                result.no_command_reason = Some(reason);
                result.latency = started.elapsed();
                return Ok(result);
            }
            Plan::Ask(plan) => plan,
        };
        let mut commands = plan.settled.clone();
        if !plan.narrowed.is_empty() {
            let candidates: Vec<&Device> = plan.narrowed.iter().collect();
            let schema =
                schema::utterance_schema(&candidates, &plan.numbers, candidates.len().min(self.config.max_commands));
            let messages = prompt::messages(&self.catalog, &plan.request);
            let reply =
                client.complete(&messages, self.config.constrain.then_some(&schema), self.config.max_tokens).await?;
            result.asked_model = true;
            let replied = parse_reply(&self.catalog, &reply.content)?;
            // The schema already allows only these devices; checked again all the same.
            if let Some(stray) = replied.iter().find(|c| !candidates.iter().any(|d| d.id == c.device)) {
                return Err(NluError::NotAsked { device: stray.device.clone(), reply: reply.content.clone() });
            }
            for command in replied {
                // One command per device and utterance: a second, different one for the
                // same device ("turn on" and "turn off" the projector) is the model
                // contradicting itself, and the first stands.
                if !commands.iter().any(|c| c.device == command.device) {
                    commands.push(command);
                }
            }
            result.model = Some(reply);
        }
        // Whoever produced them, nothing leaves this stage unchecked.
        for command in &commands {
            self.catalog.check(command).map_err(|source| NluError::Invalid {
                source,
                reply: serde_json::to_string(command).unwrap_or_default(),
            })?;
        }
        if commands.len() > self.config.max_commands {
            return Err(NluError::TooManyCommands { count: commands.len(), max: self.config.max_commands });
        }
        // In the order the devices were named.
        commands.sort_by_key(|c| plan.order.iter().position(|d| self.catalog.devices[*d].id == c.device));
        result.needs_confirmation = commands
            .iter()
            .filter(|c| self.catalog.device(&c.device).is_some_and(|d| d.needs_confirmation(&c.action)))
            .cloned()
            .collect();
        if commands.is_empty() {
            result.no_command_reason = Some("model");
        }
        result.commands = commands;
        result.latency = started.elapsed();
        Ok(result)
    }

    /// Everything before the model: normalization, the question and action
    /// checks, the devices each clause names, what the words settle, and
    /// what is left for the model.
    fn plan_words(&self, text: &str) -> Plan {
        let words = normalize::normalize(text);
        if words.is_empty() {
            return Plan::NoCommand("empty");
        }
        if QUESTION_WORDS.contains(&words[0].as_str()) {
            return Plan::NoCommand("question");
        }
        let mut mentions = self.linker.find(&words);
        let groups = self.groups(&words);
        // "all conveyors" is the group, not a guess at one conveyor.
        mentions.retain(|m| m.score >= 1.0 || !groups.iter().any(|g| m.start < g.end && g.start < m.end));
        let free: Vec<linker::Mention> =
            groups.into_iter().filter(|g| !mentions.iter().any(|m| m.start < g.end && g.start < m.end)).collect();
        mentions.extend(free);
        mentions.sort_by_key(|m| m.start);
        let named_any = !mentions.is_empty();
        if !named_any {
            // "skip to the next track": the device is the one with that action. When
            // several have it ("set the volume to 30"), guessing would actuate the wrong one.
            let devices = self.devices_by_action_words(&words);
            if devices.is_empty() {
                return Plan::NoCommand("no_device");
            }
            if devices.len() > 1 {
                return Plan::NoCommand("ambiguous");
            }
            mentions = devices
                .into_iter()
                .map(|d| linker::Mention { target: Target::Device(d), start: 0, end: 0, score: 0.0 })
                .collect();
        }
        let all_devices: Vec<usize> = mentions.iter().flat_map(|m| self.devices_of(m, &words)).collect();
        if !self.asks_for_change(&words, &all_devices, &mentions) {
            return Plan::NoCommand("no_action");
        }
        let protected: Vec<(usize, usize)> = mentions.iter().map(|m| (m.start, m.end)).collect();
        let mut settled: Vec<Command> = Vec::new();
        let mut unsettled: Vec<usize> = Vec::new();
        // Per unsettled device, the words of its clause: they narrow what the model may choose.
        let mut cues: Vec<Vec<String>> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        let mut previous_cue: Vec<String> = Vec::new();
        let clauses = if named_any { resolve::clauses(&words, &protected) } else { vec![(0, words.len())] };
        for (start, end) in clauses {
            // The clause's own words outside names, or the previous clause's when it has none.
            let own: Vec<String> = (start..end)
                .filter(|i| !protected.iter().any(|&(s, e)| s <= *i && *i < e))
                .map(|i| words[i].clone())
                .collect();
            let cue = if resolve::has_own_cue(&own) { own } else { previous_cue.clone() };
            previous_cue = cue.clone();
            let in_clause: Vec<&linker::Mention> =
                mentions.iter().filter(|m| (!named_any) || (start <= m.start && m.start < end)).collect();
            // "all the lights in the hall": the group within the area, and the area says nothing more.
            let clause_areas: Vec<&str> = in_clause
                .iter()
                .filter_map(|m| if let Target::Area(area) = &m.target { Some(area.as_str()) } else { None })
                .collect();
            let clause_has_group = in_clause.iter().any(|m| matches!(m.target, Target::Group(_)));
            for mention in in_clause {
                if clause_has_group && matches!(mention.target, Target::Area(_)) {
                    continue;
                }
                let by_area = matches!(mention.target, Target::Area(_));
                let by_group = matches!(mention.target, Target::Group(_));
                let mut area_settled = Vec::new();
                let mut area_unsettled = Vec::new();
                let mut devices = self.devices_of(mention, &cue);
                if by_group && !clause_areas.is_empty() {
                    devices.retain(|&d| {
                        self.catalog.devices[d].area.as_deref().is_some_and(|a| clause_areas.contains(&a))
                    });
                }
                for device in devices {
                    match resolve::resolve(&self.catalog.devices[device], &cue) {
                        resolve::Resolution::Command(command) => area_settled.push((device, command)),
                        resolve::Resolution::Unsettled => area_unsettled.push(device),
                        resolve::Resolution::Nothing => {}
                    }
                }
                // An area (or an action word) names several devices: the ones the words settle are
                // meant; when there is exactly one, that is the command, otherwise the model chooses.
                // A group ("all the lights") is every member the words settle, nothing else.
                let (take_settled, take_unsettled) = if by_group {
                    (area_settled, Vec::new())
                } else if (by_area || !named_any) && area_settled.len() > 1 {
                    (Vec::new(), area_settled.iter().map(|(d, _)| *d).collect())
                } else if (by_area || !named_any) && area_settled.len() == 1 {
                    (area_settled, Vec::new())
                } else {
                    (area_settled, area_unsettled)
                };
                for (device, command) in take_settled {
                    if !order.contains(&device) {
                        order.push(device);
                    }
                    if !settled.contains(&command) {
                        settled.push(command);
                    }
                }
                for device in take_unsettled {
                    if !order.contains(&device) {
                        order.push(device);
                    }
                    if !unsettled.contains(&device)
                        && !settled.iter().any(|c| c.device == self.catalog.devices[device].id)
                    {
                        unsettled.push(device);
                        cues.push(cue.clone());
                    }
                }
            }
        }
        if settled.is_empty() && unsettled.is_empty() {
            return Plan::NoCommand("no_action");
        }
        if !self.config.settle_by_words {
            for device in settled.drain(..).filter_map(|c| self.catalog.devices.iter().position(|d| d.id == c.device)) {
                if !unsettled.contains(&device) {
                    unsettled.push(device);
                    cues.push(Vec::new());
                }
            }
        }
        // What the model may choose from: each unsettled device with the actions its words allow.
        let narrowed: Vec<Device> = unsettled
            .iter()
            .zip(&cues)
            .filter_map(|(&i, cue)| {
                let mut device = self.catalog.devices[i].clone();
                // "off" is never play, "on" never pause.
                let out = resolve::ruled_out(cue);
                device.actions.retain(|a| !out.contains(&a.as_str()));
                // A number that fits one of the device's settings is that setting, never a
                // value-less action that would ignore it ("…light, right us to 200" is not "on").
                if let Some(value) = resolve::setting_value(cue) {
                    let fits = |a: &String| device.param(a).is_some_and(|r| (r.min..=r.max).contains(&value));
                    if device.actions.iter().any(fits) {
                        let kept: Vec<String> = device.actions.iter().filter(|a| fits(a)).cloned().collect();
                        device.actions = kept;
                    }
                }
                (!device.actions.is_empty()).then_some(device)
            })
            .collect();
        if settled.is_empty() && narrowed.is_empty() {
            return Plan::NoCommand("no_action");
        }
        // Write matched names as the catalog spells them: the model reads "conveyor two", not "can may or do".
        let mut request = Vec::new();
        let mut i = 0;
        while i < words.len() {
            match mentions.iter().find(|m| m.start == i && m.end > m.start) {
                Some(mention) => {
                    match &mention.target {
                        Target::Device(index) => request.push(self.catalog.devices[*index].name.clone()),
                        Target::Area(area) => request.push(area.clone()),
                        Target::Group(_) => request.push(words[mention.start].clone()),
                    }
                    i = mention.end;
                }
                None => {
                    request.push(words[i].clone());
                    i += 1;
                }
            }
        }
        let numbers: Vec<i64> = words.iter().filter_map(|w| w.parse::<i64>().ok()).collect();
        Plan::Ask(Asked { settled, narrowed, order, request: request.join(" "), numbers })
    }

    /// "All the lights", "every conveyor", "both pumps": with one of those
    /// words, a word that ends the names of two or more devices stands for
    /// all of them.
    fn groups(&self, words: &[String]) -> Vec<linker::Mention> {
        if !words.iter().any(|w| matches!(w.as_str(), "all" | "every" | "everything" | "both")) {
            return Vec::new();
        }
        let mut groups: Vec<linker::Mention> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let head = singular(word);
            if self.group_members(&head).len() >= 2 && !groups.iter().any(|g| g.target == Target::Group(head.clone())) {
                groups.push(linker::Mention { target: Target::Group(head), start: i, end: i + 1, score: 1.0 });
            }
        }
        groups
    }

    /// Devices whose name or an alias ends in `head` (singular).
    fn group_members(&self, head: &str) -> Vec<usize> {
        (0..self.catalog.devices.len())
            .filter(|&i| {
                let device = &self.catalog.devices[i];
                std::iter::once(&device.name)
                    .chain(&device.aliases)
                    .any(|name| normalize::normalize(name).last().is_some_and(|w| singular(w) == head))
            })
            .collect()
    }

    /// The devices a mention stands for: the device, the group, or the
    /// devices of the area — narrowed to those whose names share a word with
    /// `words` when any does ("lights on in the kitchen" is the kitchen light).
    fn devices_of(&self, mention: &linker::Mention, words: &[String]) -> Vec<usize> {
        match &mention.target {
            Target::Device(index) => vec![*index],
            Target::Group(head) => self.group_members(head),
            Target::Area(area) => {
                let in_area: Vec<usize> = (0..self.catalog.devices.len())
                    .filter(|&i| self.catalog.devices[i].area.as_deref() == Some(area.as_str()))
                    .collect();
                let said: Vec<String> = words.iter().map(|w| singular(w)).collect();
                let area_words: Vec<String> = normalize::normalize(area).iter().map(|w| singular(w)).collect();
                let typed: Vec<usize> = in_area
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let device = &self.catalog.devices[i];
                        std::iter::once(&device.name).chain(&device.aliases).any(|name| {
                            normalize::normalize(name)
                                .iter()
                                .map(|w| singular(w))
                                .any(|w| !area_words.contains(&w) && said.contains(&w))
                        })
                    })
                    .collect();
                if typed.is_empty() {
                    in_area
                } else {
                    typed
                }
            }
        }
    }

    /// Whether the words ask for a change to one of `devices`: a control
    /// word, a word of one of their actions ("volume", "track"), a unit, or a
    /// number right after a device's name ("thermostat 18").
    fn asks_for_change(&self, words: &[String], devices: &[usize], mentions: &[linker::Mention]) -> bool {
        let action_words: Vec<&str> =
            devices.iter().flat_map(|&i| self.catalog.devices[i].actions.iter()).flat_map(|a| a.split('_')).collect();
        // "closer", "dimmer", "turning": recognizers and speakers bend the verb.
        let control = |w: &str| {
            CONTROL_WORDS.iter().any(|c| w == *c || (c.len() >= 3 && w.starts_with(c) && w.len() <= c.len() + 3))
        };
        let word_cue =
            words.iter().any(|w| control(w) || VALUE_UNITS.contains(&w.as_str()) || action_words.contains(&w.as_str()));
        let number_after_to =
            words.windows(2).any(|pair| matches!(pair[0].as_str(), "to" | "at") && pair[1].parse::<i64>().is_ok());
        let number_after_name = mentions.iter().any(|m| {
            matches!(m.target, Target::Device(_)) && words.get(m.end).is_some_and(|w| w.parse::<i64>().is_ok())
        });
        word_cue || number_after_name || number_after_to
    }

    /// Devices with an action whose specific word the utterance contains
    /// ("next track", "play", "mute"), or whose unit it names ("degrees").
    fn devices_by_action_words(&self, words: &[String]) -> Vec<usize> {
        let has = |w: &str| words.iter().any(|x| x == w);
        let says_degrees = has("degrees") || has("degree");
        (0..self.catalog.devices.len())
            .filter(|&i| {
                let device = &self.catalog.devices[i];
                device.actions.iter().any(|action| {
                    let specific = action.split('_').any(|part| !GENERIC_ACTION_WORDS.contains(&part) && has(part));
                    let unit = device.param(action).and_then(|r| r.unit.as_deref());
                    specific || (says_degrees && matches!(unit, Some("celsius" | "fahrenheit")))
                })
            })
            .collect()
    }
}

/// "lights" → "light": enough English plural for matching names.
fn singular(word: &str) -> String {
    word.strip_suffix('s').filter(|stem| stem.len() >= 3 && !stem.ends_with('s')).unwrap_or(word).to_owned()
}

enum Plan {
    NoCommand(&'static str),
    Ask(Asked),
}

/// One utterance planned from its words ([`Interpreter::plan`]): what the
/// router looks at and what the interpreter then finishes, so that no
/// utterance is planned twice.
pub struct Planned {
    text: String,
    plan: Plan,
    took: Duration,
}

impl Planned {
    /// The devices the words name and whether a model will be asked.
    pub fn preview(&self, catalog: &Catalog) -> Preview {
        match &self.plan {
            Plan::NoCommand(_) => Preview { devices: Vec::new(), asks_model: false },
            Plan::Ask(plan) => Preview {
                devices: plan.order.iter().filter_map(|d| catalog.devices.get(*d)).map(|d| d.id.clone()).collect(),
                asks_model: !plan.narrowed.is_empty(),
            },
        }
    }
}

/// What the words settled and what is left for the model.
struct Asked {
    settled: Vec<Command>,
    /// The unsettled devices with only the actions their words allow: what the schema offers.
    narrowed: Vec<Device>,
    /// Devices in the order they were named.
    order: Vec<usize>,
    request: String,
    numbers: Vec<i64>,
}

/// Parses the model's reply and validates every command against the
/// catalog; the first bad command refuses the whole reply (a model that
/// produced one wrong command is not trusted with the others). Duplicates
/// are dropped; "other" means no command.
pub fn parse_reply(catalog: &Catalog, reply: &str) -> Result<Vec<Command>, NluError> {
    let malformed = |reason: String| NluError::Malformed { reason, reply: reply.to_owned() };
    let value: Value = serde_json::from_str(reply).map_err(|e| malformed(e.to_string()))?;
    let commands = value.get("commands").ok_or_else(|| malformed("no \"commands\" field".to_owned()))?;
    let commands: Vec<Command> = serde_json::from_value(commands.clone()).map_err(|e| malformed(e.to_string()))?;
    if value.get("intent").and_then(Value::as_str) == Some("other") {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        return Err(malformed("intent \"other\" with commands".to_owned()));
    }
    if commands.len() > MAX_COMMANDS_CEILING {
        return Err(malformed(format!("{} commands, at most {MAX_COMMANDS_CEILING} per utterance", commands.len())));
    }
    let mut valid: Vec<Command> = Vec::new();
    for command in commands {
        catalog.check(&command).map_err(|source| NluError::Invalid { source, reply: reply.to_owned() })?;
        if !valid.contains(&command) {
            valid.push(command);
        }
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    fn home() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../devices/home.toml")).unwrap()
    }

    #[test]
    fn a_valid_reply_gives_its_commands_once() {
        let reply =
            r#"{"intent":"control","commands":[{"device":"tv","action":"mute"},{"device":"tv","action":"mute"}]}"#;
        let commands = parse_reply(&home(), reply).unwrap();
        assert_eq!(commands, vec![Command { device: "tv".into(), action: "mute".into(), value: None }]);
    }

    #[test]
    fn tampered_replies_are_refused_with_the_reason() {
        let catalog = home();
        let unknown = r#"{"intent":"control","commands":[{"device":"oven","action":"turn_on"}]}"#;
        assert!(matches!(parse_reply(&catalog, unknown), Err(NluError::Invalid { .. })));
        let out_of_range =
            r#"{"intent":"control","commands":[{"device":"thermostat","action":"set_temperature","value":99}]}"#;
        let error = parse_reply(&catalog, out_of_range).unwrap_err().to_string();
        assert!(error.contains("thermostat"), "{error}");
        let wrong_action = r#"{"intent":"control","commands":[{"device":"tv","action":"unlock"}]}"#;
        assert!(matches!(parse_reply(&catalog, wrong_action), Err(NluError::Invalid { .. })));
        assert!(matches!(parse_reply(&catalog, "{\"commands\": [oops"), Err(NluError::Malformed { .. })));
        let extra_field = r#"{"intent":"control","commands":[{"device":"tv","action":"mute","why":"x"}]}"#;
        assert!(matches!(parse_reply(&catalog, extra_field), Err(NluError::Malformed { .. })));
        let other_with_commands = r#"{"intent":"other","commands":[{"device":"tv","action":"mute"}]}"#;
        assert!(matches!(parse_reply(&catalog, other_with_commands), Err(NluError::Malformed { .. })));
    }

    #[test]
    fn all_the_lights_is_every_light_the_words_settle() {
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(home(), client, InterpreterConfig::default());
        let Plan::Ask(asked) = interpreter.plan_words("turn off all the lights") else { panic!("no plan") };
        let devices: Vec<&str> = asked.settled.iter().map(|c| c.device.as_str()).collect();
        assert_eq!(devices, ["kitchen_light", "bedroom_light", "porch_light"]);
        assert!(asked.settled.iter().all(|c| c.action == "turn_off"));
        assert!(asked.narrowed.is_empty());
    }

    #[test]
    fn other_means_no_command() {
        assert!(parse_reply(&home(), r#"{"intent":"other","commands":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn an_action_word_that_several_devices_share_names_none_of_them() {
        // Heard from "set the tv volume to thirty": commanding the tv and the speaker
        // (or the thermostat, which "setting" once sounded like) would be a guess.
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(home(), client, InterpreterConfig::default());
        assert!(matches!(interpreter.plan_words("setting the volume to 30"), Plan::NoCommand("ambiguous")));
        let Plan::Ask(asked) = interpreter.plan_words("skip to the next track") else { panic!("no plan") };
        assert_eq!(asked.settled[0].device, "kitchen_speaker");
    }

    #[test]
    fn the_model_chooses_only_among_actions_the_words_allow() {
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(home(), client, InterpreterConfig::default());
        // A number that fits a setting leaves only the settings it fits.
        let Plan::Ask(asked) = interpreter.plan_words("at the kitchen light right us to 200") else {
            panic!("no plan")
        };
        assert_eq!(asked.narrowed[0].actions, ["set_brightness", "set_color_temp"]);
        // "off" leaves no action that starts something.
        let Plan::Ask(asked) = interpreter.plan_words("turn off the music") else { panic!("no plan") };
        assert!(!asked.narrowed[0].actions.contains(&"play".to_owned()), "{:?}", asked.narrowed[0].actions);
    }
}
