//! The intent stage: a transcript in, zero or more catalog-validated
//! commands out — or none, with the reason. When in doubt it refuses; it
//! never substitutes a device or an action.
//!
//! 1. `normalize`: lowercase words, fillers dropped, numbers as digits.
//! 2. `grammar`: whether it is a request at all (questions, timers, lists,
//!    chit-chat are not), the verb with its sense, the value.
//! 3. `linker`: devices, areas and floors the words name, fuzzily
//!    (recognizer near-misses included) but never a near-miss that names
//!    something else; kind words ("the lights"), groups, "everything", the
//!    speaker's room. Something the site lacks is `no_such_device`.
//! 4. Per clause (`resolve` splits them), the verb becomes each target's
//!    action (`grammar`); a named device that cannot is `unsupported_action`,
//!    a group's members that cannot are skipped. Only named devices whose verb
//!    the words do not say go to the model: it gets the catalog (a cached
//!    prompt prefix), the request with matched names written as the catalog
//!    spells them, and a schema that allows only those devices, their actions
//!    and the numbers the request contains (`schema::utterance_schema`).
//! 5. Every command in the reply is validated against the catalog again; a
//!    reply that fails is refused as a whole with the reason.

mod client;
mod grammar;
pub(crate) mod linker;
pub(crate) mod normalize;
mod prompt;
pub(crate) mod resolve;
mod schema;

pub use client::{ChatClient, ChatError, ChatParams, ChatReply, Message};
pub use grammar::{NoCommandReason, Refusal};
pub use schema::{command_schema, utterance_schema};

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::catalog::{Catalog, Device, Kind};
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
    /// The utterance makes more requests than `limits.max_commands` allows
    /// (a named device is one request, a group such as "all the lights" one): refused whole.
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
    /// Why there is no command, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_command_reason: Option<NoCommandReason>,
    /// The reason in words ("there is no lock in the kitchen").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
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
    /// Most requests one utterance may make (`limits.max_commands`): each named
    /// device is one, a group ("all the lights", "everything downstairs") is one
    /// however many devices it has; more refuse the utterance.
    pub max_commands: usize,
    /// The speaker's room (`--area`, `[audio] area`): where "the light" is
    /// when the words name no place.
    pub area: Option<String>,
}

impl Default for InterpreterConfig {
    fn default() -> Self {
        InterpreterConfig { constrain: true, max_tokens: 160, settle_by_words: true, max_commands: 8, area: None }
    }
}

/// Turns transcripts into commands for one catalog.
pub struct Interpreter {
    catalog: Catalog,
    linker: Linker,
    /// Every area and floor name and alias, normalized, with the place it names (built once).
    places: Vec<(Vec<String>, String)>,
    // Swapped when a supervised engine restarts on a new port and token.
    client: std::sync::RwLock<ChatClient>,
    config: InterpreterConfig,
}

impl Interpreter {
    /// An interpreter for `catalog` asking the model behind `client`.
    pub fn new(catalog: Catalog, client: ChatClient, config: InterpreterConfig) -> Interpreter {
        let linker = Linker::new(&catalog);
        let places = place_phrases(&catalog);
        Interpreter { catalog, linker, places, client: std::sync::RwLock::new(client), config }
    }

    /// An interpreter for another catalog (a reload), asking the same engine
    /// with the same settings.
    pub fn for_catalog(&self, catalog: Catalog) -> Interpreter {
        Interpreter::new(catalog, self.client(), self.config.clone())
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
        self.plan_in(text, self.config.area.as_deref())
    }

    /// Plans one utterance heard in `area` (the speaker's room; `None`: unknown).
    pub fn plan_in(&self, text: &str, area: Option<&str>) -> Planned {
        let started = Instant::now();
        let plan = self.plan_words(text, area);
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
            explanation: None,
            latency: Duration::ZERO,
            asked_model: false,
            model: None,
        };
        let plan = match &planned.plan {
            Plan::NoCommand(refusal) => {
                result.no_command_reason = Some(refusal.reason);
                result.explanation = Some(refusal.explanation.clone());
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
        if plan.requests > self.config.max_commands {
            return Err(NluError::TooManyCommands { count: plan.requests, max: self.config.max_commands });
        }
        // In the order the devices were named.
        commands.sort_by_key(|c| plan.order.iter().position(|d| self.catalog.devices[*d].id == c.device));
        result.needs_confirmation = commands
            .iter()
            .filter(|c| self.catalog.device(&c.device).is_some_and(|d| d.needs_confirmation(&c.action)))
            .cloned()
            .collect();
        if commands.is_empty() {
            result.no_command_reason = Some(NoCommandReason::Model);
            result.explanation = Some("the model found nothing to do".to_owned());
        }
        result.commands = commands;
        result.latency = started.elapsed();
        Ok(result)
    }

    /// Everything before the model: normalization; whether it is a request at
    /// all; the targets each clause names (devices, kinds, areas, floors,
    /// "all", "everything", the speaker's `area` when it names none); the
    /// verb and value the words say; which action of each target that is;
    /// and what is left for the model. Anything named that the site lacks,
    /// or asked of a target that cannot do it, is a refusal with its reason.
    fn plan_words(&self, text: &str, area: Option<&str>) -> Plan {
        let words = normalize::normalize(text);
        if words.is_empty() {
            return Plan::NoCommand(Refusal::new(NoCommandReason::Empty, "nothing was said"));
        }
        let mut mentions = self.linker.find(&words);
        let kinds = self.kind_mentions(&words, &mentions);
        // A fuzzy device match that spans a kind word of another kind is not that
        // device ("the garage lock" is no lock, not the garage door).
        // (When the site has a thing of that kind at all: "the ventilator" is the ventilation
        // in a site without fans.)
        let site_has = |k: Kind| self.catalog.devices.iter().any(|d| d.kind == Some(k));
        let mut dropped: Vec<(usize, usize)> = Vec::new();
        mentions.retain(|m| match m.target {
            Target::Device(d) if m.score < 1.0 => {
                let kind = self.catalog.devices[d].kind;
                // Nor when the word right after it is one ("turn off over lights" is no hoover).
                let other_kind =
                    kinds.iter().any(|(i, k)| m.start <= *i && *i <= m.end && Some(*k) != kind && site_has(*k));
                // "conveyor nine" is not conveyor one.
                let device_numbers: Vec<String> = normalize::normalize(&self.catalog.devices[d].name)
                    .into_iter()
                    .filter(|w| w.parse::<i64>().is_ok())
                    .collect();
                let other_number = words[m.start..m.end]
                    .iter()
                    .any(|w| w.parse::<i64>().is_ok() && !device_numbers.is_empty() && !device_numbers.contains(w));
                if other_kind || other_number {
                    dropped.push((m.start, m.end));
                }
                !other_kind && !other_number
            }
            _ => true,
        });
        let kinds: Vec<(usize, Kind)> = kinds
            .into_iter()
            .filter(|(i, k)| site_has(*k) || !mentions.iter().any(|m| m.start <= *i && *i < m.end))
            .collect();
        // Never a substitute: a near-miss device match is not taken when its words name a
        // place where the device is not ("the bathroom fan" is not the bedroom fan, "the
        // living room" is no "living room tv" when the tv is elsewhere), or when beside little
        // words they are only a kind word ("the lights" is not "hall lights").
        let places = &self.places;
        let place_words: Vec<&String> = places.iter().flat_map(|(phrase, _)| phrase.iter()).collect();
        mentions.retain(|m| {
            let Target::Device(d) = m.target else { return true };
            if m.score >= 1.0 {
                return true;
            }
            let span = &words[m.start..m.end];
            let device_area = self.catalog.devices[d].area.as_deref();
            let names_other_place = places.iter().any(|(phrase, place)| {
                contains_phrase(span, phrase)
                    && device_area != Some(place.as_str())
                    && device_area.and_then(|a| self.catalog.floor_of(a)) != Some(place.as_str())
            });
            // Only place words (and numbers) beside little words: the place, not a device there.
            let core: Vec<&String> = span.iter().filter(|w| !linker::is_glue(w) && w.parse::<i64>().is_err()).collect();
            let is_a_place = !core.is_empty() && core.iter().all(|w| place_words.contains(w));
            let only_kind = span.iter().all(|w| linker::is_glue(w) || grammar::kind_of_word(w).is_some());
            // Beside a kind word, the other words must sound like the device's own
            // ("memory light" is the bedroom light; "light in the house" is no mirror light).
            let device_words: Vec<String> = std::iter::once(&self.catalog.devices[d].name)
                .chain(&self.catalog.devices[d].aliases)
                .flat_map(|n| normalize::normalize(n))
                .filter(|w| grammar::kind_of_word(w).is_none())
                .collect();
            let has_kind = span.iter().any(|w| grammar::kind_of_word(w).is_some());
            let strays = span.iter().filter(|w| !linker::is_glue(w) && grammar::kind_of_word(w).is_none()).any(|w| {
                !device_words.iter().any(|dw| {
                    linker::similarity(
                        &linker::phonetic_key(std::slice::from_ref(w)),
                        &linker::phonetic_key(std::slice::from_ref(dw)),
                    ) >= STRAY_SIMILARITY
                })
            });
            // Words that say what to do are not a name ("mower back to base" is no back door).
            let a_verb = matches!(
                grammar::verb(span),
                Some(
                    grammar::Verb::Dock
                        | grammar::Verb::Previous
                        | grammar::Verb::Next
                        | grammar::Verb::Pause
                        | grammar::Verb::Resume
                        | grammar::Verb::Mute
                        | grammar::Verb::Unmute
                        | grammar::Verb::EmergencyStop
                )
            );
            // A room people have that this site does not ("the bathroom light" where there is
            // a bedroom light): a near miss there is a substitute, never the device meant.
            let foreign_place = span.iter().any(|w| COMMON_PLACES.contains(&w.as_str()) && !device_words.contains(w));
            let keep = !(names_other_place || is_a_place || only_kind || a_verb || foreign_place || has_kind && strays);
            if !keep {
                dropped.push((m.start, m.end));
            }
            keep
        });
        // What a dropped near-miss covered may still be a place said exactly ("the lights in the living room").
        for &(start, end) in &dropped {
            for (phrase, place) in places {
                let span = &words[start..end];
                if let Some(at) = span.windows(phrase.len().max(1)).position(|w| w == phrase.as_slice()) {
                    let from = start + at;
                    let target = if self.catalog.floors.iter().any(|f| &f.name == place) {
                        Target::Floor(place.clone())
                    } else {
                        Target::Area(place.clone())
                    };
                    if !mentions.iter().any(|m| m.start < from + phrase.len() && from < m.end) {
                        mentions.push(linker::Mention { target, start: from, end: from + phrase.len(), score: 1.0 });
                    }
                }
            }
        }
        mentions.sort_by_key(|m| m.start);
        // Places are matched as said, not guessed ("the house" is no bathroom).
        mentions.retain(|m| !matches!(m.target, Target::Area(_) | Target::Floor(_)) || m.score >= 0.9);
        let names_device = mentions.iter().any(|m| matches!(m.target, Target::Device(_)) && m.score >= 1.0);
        let outside: Vec<String> = (0..words.len())
            .filter(|i| !mentions.iter().any(|m| m.start <= *i && *i < m.end))
            .map(|i| words[i].clone())
            .collect();
        if let Some(refusal) = grammar::not_a_command(&words, text, names_device, &outside) {
            return Plan::NoCommand(refusal);
        }
        // A kind word is the kind ("all the lights" is every light, lamps included), not a name suffix.
        let groups: Vec<linker::Mention> = self
            .groups(&words)
            .into_iter()
            .filter(|g| !kinds.iter().any(|(i, _)| g.start <= *i && *i < g.end))
            .collect();
        // "all conveyors" is the group, not a guess at one conveyor.
        mentions.retain(|m| m.score >= 1.0 || !groups.iter().any(|g| m.start < g.end && g.start < m.end));
        let free: Vec<linker::Mention> =
            groups.into_iter().filter(|g| !mentions.iter().any(|m| m.start < g.end && g.start < m.end)).collect();
        mentions.extend(free);
        mentions.sort_by_key(|m| m.start);
        // Kind words inside a matched name are part of the name ("kitchen light").
        let kinds: Vec<(usize, Kind)> = kinds
            .into_iter()
            .filter(|(i, _)| {
                !mentions
                    .iter()
                    .any(|m| m.start <= *i && *i < m.end && !matches!(m.target, Target::Area(_) | Target::Floor(_)))
            })
            .collect();
        let mut protected: Vec<(usize, usize)> = mentions.iter().map(|m| (m.start, m.end)).collect();
        protected.extend(kinds.iter().map(|(i, _)| (*i, *i + 1)));
        let named_any = !mentions.is_empty() || !kinds.is_empty() || everything(&words);

        let mut settled: Vec<Command> = Vec::new();
        let mut unsettled: Vec<usize> = Vec::new();
        let mut cues: Vec<Vec<String>> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        let mut requests = 0usize;
        let mut refusal: Option<Refusal> = None;
        let mut previous_cue: Vec<String> = Vec::new();
        let mut previous_targets: Option<Targets> = None;
        let clauses = if named_any { resolve::clauses(&words, &protected) } else { vec![(0, words.len())] };
        // "close the garage door, lock the front door": a verb after a name starts a new clause.
        let clauses: Vec<(usize, usize)> = clauses
            .into_iter()
            .flat_map(|(start, end)| {
                let mut parts = Vec::new();
                let mut from = start;
                for (i, word) in words.iter().enumerate().take(end).skip(start + 1) {
                    let named_before = protected.iter().any(|&(s, e)| from <= s && e <= i);
                    let inside = protected.iter().any(|&(s, e)| s <= i && i < e);
                    // Only when the words before have a verb of their own ("the washer, start it" is one request).
                    let own_before: Vec<String> = (from..i)
                        .filter(|j| !protected.iter().any(|&(s, e)| s <= *j && *j < e))
                        .map(|j| words[j].clone())
                        .collect();
                    if named_before && !inside && grammar::starts_request(word) && grammar::verb(&own_before).is_some()
                    {
                        parts.push((from, i));
                        from = i;
                    }
                }
                parts.push((from, end));
                parts
            })
            .collect();
        let mut previous_kinds: Vec<Kind> = Vec::new();
        let kinds_of = |(start, end): (usize, usize)| -> Vec<Kind> {
            kinds.iter().filter(|(i, _)| start <= *i && *i < end).map(|(_, k)| *k).collect()
        };
        for (index, &(start, end)) in clauses.iter().enumerate() {
            let own: Vec<String> = (start..end)
                .filter(|i| !protected.iter().any(|&(s, e)| s <= *i && *i < e))
                .map(|i| words[i].clone())
                .collect();
            let has_own = resolve::has_own_cue(&own);
            let cue = if has_own { own } else { previous_cue.clone() };
            previous_cue = cue.clone();
            let clause_words = &words[start..end];
            let in_clause: Vec<&linker::Mention> =
                mentions.iter().filter(|m| start <= m.start && m.start < end).collect();
            let mut clause_kinds: Vec<Kind> =
                kinds.iter().filter(|(i, _)| start <= *i && *i < end).map(|(_, k)| *k).collect();
            // "lights on in the kitchen and the bedroom": the bedroom's lights.
            let names_device_here = in_clause.iter().any(|m| matches!(m.target, Target::Device(_) | Target::Group(_)));
            if clause_kinds.is_empty() && !names_device_here && !has_own {
                clause_kinds = previous_kinds.clone();
            }
            // "the bedroom and bathroom lights": the bedroom's lights too.
            if clause_kinds.is_empty() && !names_device_here {
                if let Some(&next) = clauses.get(index + 1) {
                    let next_own: Vec<String> = (next.0..next.1)
                        .filter(|i| !protected.iter().any(|&(s, e)| s <= *i && *i < e))
                        .map(|i| words[i].clone())
                        .collect();
                    if !resolve::has_own_cue(&next_own) {
                        clause_kinds = kinds_of(next);
                    }
                }
            }
            previous_kinds = clause_kinds.clone();
            let targets = match self.targets(&in_clause, &clause_kinds, clause_words, area, named_any) {
                Ok(Some(targets)) => targets,
                // Nothing named at all: the one device that can do what the words say
                // ("pause", "skip to the next track"), in the speaker's room when several can.
                Ok(None) if !named_any => match self.implied_target(&words, area) {
                    Ok(targets) => targets,
                    Err(r) => return Plan::NoCommand(r),
                },
                Ok(None) => match previous_targets.clone() {
                    // "turn on the porch light and dim it": the clause's verb for the previous targets.
                    Some(targets) if has_own => targets,
                    _ => continue,
                },
                Err(r) => {
                    refusal.get_or_insert(r);
                    continue;
                }
            };
            previous_targets = Some(targets.clone());
            let verb = grammar::verb(&cue);
            // "turn the heating" (heard for "turn the heating off"): a turn that says neither on
            // nor off, up nor down, is no request the model may settle either way.
            if verb.is_none() && cue.iter().any(|w| w == "turn" || w == "switch") {
                refusal.get_or_insert(Refusal::new(
                    NoCommandReason::Ambiguous,
                    format!("turn the {} on or off?", targets.label),
                ));
                continue;
            }
            // A group asks for something only with a word that asks for a change: "book the
            // meeting room for three" sets nothing in the meeting room.
            if !targets.explicit && !self.asks_for_change(&cue, &[], &[]) {
                continue;
            }
            if !targets.explicit && targets.any_kind && matches!(verb, Some(grammar::Verb::Set(None, _))) {
                refusal.get_or_insert(Refusal::new(
                    NoCommandReason::Ambiguous,
                    format!("which setting of the {}?", targets.label),
                ));
                continue;
            }
            requests += targets.requests;
            let negated = resolve::negated(&cue);
            if negated {
                refusal.get_or_insert(Refusal::new(
                    NoCommandReason::NotACommand,
                    "a negated or descriptive sentence: nothing to do",
                ));
                continue;
            }
            let mut done_any = false;
            let mut open_devices = Vec::new();
            for &device in &targets.devices {
                let d = &self.catalog.devices[device];
                match verb.map(|v| grammar::resolve(d, v, &cue)) {
                    // A group's player is paused by "off" only when the words are about the music.
                    Some(grammar::Resolution::Command(action, _))
                        if !targets.explicit
                            && action == "pause"
                            && verb == Some(grammar::Verb::Off)
                            && !cue
                                .iter()
                                .chain(clause_words)
                                .any(|w| matches!(w.as_str(), "music" | "speaker" | "speakers")) => {}
                    Some(grammar::Resolution::Command(action, value)) => {
                        done_any = true;
                        let command = Command { device: d.id.clone(), action, value };
                        if !order.contains(&device) {
                            order.push(device);
                        }
                        if !settled.iter().any(|c| c.device == command.device) {
                            settled.push(command);
                        }
                    }
                    Some(grammar::Resolution::Unsupported) if targets.explicit => {
                        let asked = verb.map_or_else(|| "do that".to_owned(), grammar::describe);
                        refusal.get_or_insert(Refusal::new(
                            NoCommandReason::UnsupportedAction,
                            format!("the {} cannot {asked}", d.name),
                        ));
                    }
                    Some(grammar::Resolution::Unsupported) => {}
                    Some(grammar::Resolution::Open) | None => open_devices.push(device),
                }
            }
            if !done_any && open_devices.is_empty() {
                let what = targets.label.clone();
                let asked = verb.map_or_else(|| "do that".to_owned(), grammar::describe);
                // A bare place where nothing can ("set the kitchen to 20 degrees"): the thing
                // that could is what the site does not have there.
                let refused = if targets.explicit {
                    Refusal::new(NoCommandReason::UnsupportedAction, format!("the {what} cannot {asked}"))
                } else if targets.any_kind {
                    Refusal::new(NoCommandReason::NoSuchDevice, format!("nothing among the {what} can {asked}"))
                } else {
                    Refusal::new(NoCommandReason::UnsupportedAction, format!("none of the {what} can {asked}"))
                };
                refusal.get_or_insert(refused);
                continue;
            }
            // Only named devices go to the model; a group's members either do what the words say or are skipped.
            if targets.explicit || (!done_any && open_devices.len() == 1) {
                for device in open_devices {
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
            } else if !done_any {
                refusal.get_or_insert(Refusal::new(
                    NoCommandReason::Ambiguous,
                    format!("several {} and the words do not say what to do", targets.label),
                ));
            }
        }
        if !named_any && settled.is_empty() && unsettled.is_empty() {
            return Plan::NoCommand(
                refusal.unwrap_or_else(|| Refusal::new(NoCommandReason::NoDevice, "no device of this site is named")),
            );
        }
        // When anything named could not be done, nothing is: a half-understood request is refused whole.
        if let Some(refusal) = refusal {
            return Plan::NoCommand(refusal);
        }
        if settled.is_empty() && unsettled.is_empty() {
            return Plan::NoCommand(Refusal::new(NoCommandReason::NoAction, "nothing is asked of the devices named"));
        }
        let all_devices: Vec<usize> = order.clone();
        if !unsettled.is_empty() && !self.asks_for_change(&words, &all_devices, &mentions) {
            unsettled.clear();
            cues.clear();
            if settled.is_empty() {
                return Plan::NoCommand(Refusal::new(
                    NoCommandReason::NoAction,
                    "nothing is asked of the devices named",
                ));
            }
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
                // "set the fan" without a value sets nothing: no value-less action stands in.
                if cue.iter().any(|w| w == "set") && resolve::setting_value(cue).is_none() {
                    return None;
                }
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
            return Plan::NoCommand(Refusal::new(
                NoCommandReason::NoAction,
                "nothing the named devices can do was asked",
            ));
        }
        // Write matched names as the catalog spells them: the model reads "conveyor two", not "can may or do".
        let mut request = Vec::new();
        let mut i = 0;
        while i < words.len() {
            match mentions.iter().find(|m| m.start == i && m.end > m.start) {
                Some(mention) => {
                    match &mention.target {
                        Target::Device(index) => request.push(self.catalog.devices[*index].name.clone()),
                        Target::Area(area) | Target::Floor(area) => request.push(area.clone()),
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
        Plan::Ask(Asked { settled, narrowed, order, request: request.join(" "), numbers, requests: requests.max(1) })
    }

    /// Kind words in the utterance ("lights", "blinds", "music"), by word index;
    /// "switch" and "lock" only where they are nouns, not verbs.
    fn kind_mentions(&self, words: &[String], mentions: &[linker::Mention]) -> Vec<(usize, Kind)> {
        let mut found = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let Some(kind) = grammar::kind_of_word(word) else { continue };
            let next = words.get(i + 1).map(String::as_str);
            let verb_use = match word.as_str() {
                "switch" => {
                    i == 0 || matches!(next, Some("on" | "off" | "of" | "to" | "it" | "the" | "everything" | "all"))
                }
                "lock" => i == 0 || matches!(next, Some("the" | "up" | "it" | "all" | "everything" | "my")),
                "heat" | "heating" => false,
                "vacuum" | "clean" => i == 0,
                "media" | "player" => false,
                _ => false,
            };
            // An exact device name that contains the word keeps it ("the alarm switch").
            let in_exact_name = mentions
                .iter()
                .any(|m| m.start <= i && i < m.end && m.score >= 1.0 && matches!(m.target, Target::Device(_)));
            if !verb_use && !in_exact_name {
                found.push((i, kind));
            }
        }
        found
    }

    /// The devices one clause targets, or `Ok(None)` when it names none.
    fn targets(
        &self,
        in_clause: &[&linker::Mention],
        kinds: &[Kind],
        clause_words: &[String],
        speaker_area: Option<&str>,
        named_any: bool,
    ) -> Result<Option<Targets>, Refusal> {
        let devices: Vec<usize> =
            in_clause.iter().filter_map(|m| if let Target::Device(d) = m.target { Some(d) } else { None }).collect();
        let groups: Vec<&str> = in_clause
            .iter()
            .filter_map(|m| if let Target::Group(g) = &m.target { Some(g.as_str()) } else { None })
            .collect();
        let areas: Vec<&str> = in_clause
            .iter()
            .filter_map(|m| if let Target::Area(a) = &m.target { Some(a.as_str()) } else { None })
            .collect();
        let floors: Vec<&str> = in_clause
            .iter()
            .filter_map(|m| if let Target::Floor(f) = &m.target { Some(f.as_str()) } else { None })
            .collect();
        if !devices.is_empty() {
            // "the bedroom tv" when the tv is in the living room: no such device, not that one.
            for &d in &devices {
                let device = &self.catalog.devices[d];
                let area = device.area.as_deref();
                let floor = area.and_then(|a| self.catalog.floor_of(a));
                let elsewhere = (!areas.is_empty() && !area.is_some_and(|a| areas.contains(&a)))
                    || (!floors.is_empty() && !floor.is_some_and(|f| floors.contains(&f)));
                if elsewhere {
                    let place = areas.first().or(floors.first()).copied().unwrap_or("there");
                    return Err(Refusal::new(
                        NoCommandReason::NoSuchDevice,
                        format!("there is no {} in the {place}", device.name),
                    ));
                }
            }
            let label = devices.iter().map(|d| self.catalog.devices[*d].name.clone()).collect::<Vec<_>>().join(" and ");
            return Ok(Some(Targets { requests: devices.len(), devices, explicit: true, label, any_kind: false }));
        }
        if !groups.is_empty() && kinds.is_empty() {
            let mut members: Vec<usize> = groups.iter().flat_map(|g| self.group_members(g)).collect();
            if !areas.is_empty() {
                members.retain(|&d| self.catalog.devices[d].area.as_deref().is_some_and(|a| areas.contains(&a)));
            }
            members.dedup();
            let members = self.without_covered_groups(members);
            let label = groups.iter().map(|g| format!("{g}s")).collect::<Vec<_>>().join(" and ");
            if members.is_empty() {
                return Err(Refusal::new(NoCommandReason::NoSuchDevice, format!("there are no {label} there")));
            }
            return Ok(Some(Targets { requests: 1, devices: members, explicit: false, label, any_kind: false }));
        }
        let says_everything = everything(clause_words);
        let here = clause_words.iter().any(|w| w == "here")
            || clause_words.windows(2).any(|p| p[0] == "this" && p[1] == "room");
        if kinds.is_empty() && areas.is_empty() && floors.is_empty() && !says_everything && !here {
            return Ok(None);
        }
        // "the lights in the attic" where the site has no attic: never every light instead.
        if areas.is_empty() && floors.is_empty() {
            if let Some(unknown) = self.unknown_place(clause_words) {
                return Err(Refusal::new(NoCommandReason::NoSuchDevice, format!("there is no {unknown} here")));
            }
        }
        // Where: the areas or floors named, else "here" or the speaker's room, else the whole site.
        let all_words = clause_words.iter().any(|w| matches!(w.as_str(), "all" | "every" | "both"));
        let scope_areas: Option<Vec<String>> = if !areas.is_empty() {
            Some(areas.iter().map(|a| (*a).to_owned()).collect())
        } else if !floors.is_empty() {
            Some(
                self.catalog
                    .areas
                    .iter()
                    .filter(|a| a.floor.as_deref().is_some_and(|f| floors.contains(&f)))
                    .map(|a| a.name.clone())
                    .collect(),
            )
        } else if here || (!all_words && !whole_site(clause_words)) {
            speaker_area.map(|a| vec![a.to_owned()])
        } else {
            None
        };
        let place = if !areas.is_empty() {
            format!("in the {}", areas.join(" and the "))
        } else if !floors.is_empty() {
            format!("on the {}", floors.join(" and the "))
        } else if let Some(area) = scope_areas.as_ref().and_then(|a| a.first()) {
            format!("in the {area}")
        } else {
            "here".to_owned()
        };
        if here && speaker_area.is_none() && areas.is_empty() && floors.is_empty() {
            return Err(Refusal::new(
                NoCommandReason::Ambiguous,
                "'here' needs the speaker's room (--area, [audio] area)",
            ));
        }
        let in_scope = |d: usize| match &scope_areas {
            None => true,
            Some(areas) => self.catalog.devices[d].area.as_ref().is_some_and(|a| areas.contains(a)),
        };
        // "the music" is what plays music, not every screen.
        let music = clause_words.iter().any(|w| w == "music");
        let members: Vec<usize> = (0..self.catalog.devices.len())
            .filter(|&d| in_scope(d))
            .filter(|&d| kinds.is_empty() || self.catalog.devices[d].kind.is_some_and(|k| kinds.contains(&k)))
            .filter(|&d| !music || plays_music(&self.catalog.devices[d]))
            .collect();
        // A bare room asks for what is in it, of the kinds "everything" includes; a word beside
        // it that is neither a request word nor a name ("the garden fountain") is something
        // the site does not have.
        // A word beside the kind or place that is neither a request word, a kind word nor a
        // place ("the garden fountain", "the christmas lights") names something the site
        // does not have: never the whole kind instead.
        // Beside a kind, the word that qualifies it (just before it); beside a bare place, any word.
        let qualifiers: Vec<&String> = if kinds.is_empty() {
            clause_words.iter().collect()
        } else {
            clause_words
                .windows(2)
                .filter(|pair| grammar::kind_of_word(&pair[1]).is_some())
                .map(|pair| &pair[0])
                .collect()
        };
        if let Some(unknown) = qualifiers.into_iter().find(|w| !self.is_request_word(w)) {
            let what = if kinds.is_empty() {
                (*unknown).clone()
            } else {
                format!("{unknown} {}", kinds.iter().map(|k| kind_singular(*k)).collect::<Vec<_>>().join(" or "))
            };
            return Err(Refusal::new(NoCommandReason::NoSuchDevice, format!("there is no {what} {place}")));
        }
        let members: Vec<usize> = if kinds.is_empty() {
            // "open the garage", "lock the shed": the verb says which kind the place's device is.
            let verb = grammar::verb(clause_words);
            let opening = matches!(verb, Some(grammar::Verb::Open | grammar::Verb::Close));
            let locking = matches!(verb, Some(grammar::Verb::Lock | grammar::Verb::Unlock));
            members
                .into_iter()
                .filter(|&d| {
                    let kind = self.catalog.devices[d].kind;
                    in_everything(kind)
                        || (opening && kind == Some(Kind::Cover))
                        || (locking && kind == Some(Kind::Lock))
                })
                .collect()
        } else {
            // The word said narrows a kind when devices carry it ("the curtains", "the speaker");
            // lights are lights whatever people call them.
            let said: Vec<String> = clause_words
                .iter()
                .filter(|w| grammar::kind_of_word(w).is_some_and(|k| k != Kind::Light))
                .map(|w| singular(w))
                .collect();
            let named: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&d| {
                    let device = &self.catalog.devices[d];
                    std::iter::once(&device.name)
                        .chain(&device.aliases)
                        .any(|n| normalize::normalize(n).iter().any(|w| said.contains(&singular(w))))
                })
                .collect();
            // "the blinds" where the house has blinds, but none here: not the garage door instead.
            let said_elsewhere = self.catalog.devices.iter().any(|device| {
                std::iter::once(&device.name)
                    .chain(&device.aliases)
                    .any(|n| normalize::normalize(n).iter().any(|w| said.contains(&singular(w))))
            });
            if named.is_empty() && said_elsewhere {
                let what = said.join(" or ");
                return Err(Refusal::new(NoCommandReason::NoSuchDevice, format!("there is no {what} {place}")));
            }
            if named.is_empty() {
                members
            } else {
                named
            }
        };
        let kind_label = kinds.iter().map(|k| kind_plural(*k)).collect::<Vec<_>>().join(" and ");
        let label = if kinds.is_empty() { format!("devices {place}") } else { format!("{kind_label} {place}") };
        if members.is_empty() {
            let what = if kinds.is_empty() {
                "device".to_owned()
            } else {
                kinds.iter().map(|k| kind_singular(*k)).collect::<Vec<_>>().join(" or ")
            };
            return Err(Refusal::new(NoCommandReason::NoSuchDevice, format!("there is no {what} {place}")));
        }
        // A singular "the light" with no room to go by and several lights: which one?
        let singular = kinds.len() == 1
            && clause_words.iter().any(|w| grammar::kind_of_word(w).is_some() && kind_words_singular(w));
        if singular
            && scope_areas.is_none()
            && members.len() > 1
            && !all_words
            && !says_everything
            && named_any
            && speaker_area.is_none()
        {
            return Err(Refusal::new(
                NoCommandReason::Ambiguous,
                format!("there are {} {}; which one?", members.len(), kind_label),
            ));
        }
        let members = self.without_covered_groups(members);
        Ok(Some(Targets { requests: 1, devices: members, explicit: false, label, any_kind: kinds.is_empty() }))
    }

    /// A selection without the group devices (Zigbee2MQTT groups) whose
    /// members it also holds: each member is commanded and acknowledges on
    /// its own, and none gets the command twice, once directly and once
    /// through its group.
    fn without_covered_groups(&self, selected: Vec<usize>) -> Vec<usize> {
        let ids: Vec<&str> = selected.iter().map(|&d| self.catalog.devices[d].id.as_str()).collect();
        selected
            .iter()
            .copied()
            .filter(|&d| !self.catalog.devices[d].members.iter().any(|m| ids.contains(&m.as_str())))
            .collect()
    }

    /// "All the lights", "every conveyor", "both pumps": with one of those
    /// words, a word that ends the names of two or more devices stands for
    /// all of them.
    fn groups(&self, words: &[String]) -> Vec<linker::Mention> {
        let quantified = words.iter().any(|w| matches!(w.as_str(), "all" | "every" | "everything" | "both"));
        let mut groups: Vec<linker::Mention> = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let head = singular(word);
            // "the doors" is every door as much as "all the doors" is.
            let plural = head != *word && !linker::is_glue(word);
            // "lock all the doors": the verb is no group of locks.
            let next = words.get(i + 1).map(String::as_str);
            if grammar::starts_request(word) && (i == 0 || matches!(next, Some("the" | "all" | "up" | "my" | "every")))
            {
                continue;
            }
            if (quantified || plural)
                && self.group_members(&head).len() >= 2
                && !groups.iter().any(|g| g.target == Target::Group(head.clone()))
            {
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

    /// The target of an utterance that names nothing: the one device that can
    /// do what the words say, in the speaker's room when several can; when
    /// the words do not say, the one whose action words they use.
    fn implied_target(&self, words: &[String], area: Option<&str>) -> Result<Targets, Refusal> {
        let verb = grammar::verb(words);
        let able: Vec<usize> = match verb {
            Some(verb) => (0..self.catalog.devices.len())
                .filter(|&d| {
                    matches!(grammar::resolve(&self.catalog.devices[d], verb, words), grammar::Resolution::Command(..))
                })
                .collect(),
            None => self.devices_by_action_words(words),
        };
        // Only a verb specific to a kind of device picks it ("pause", "go back a song",
        // "louder"); "turn on" alone names nothing unless the words name the action.
        let specific = match verb {
            Some(
                grammar::Verb::Pause
                | grammar::Verb::Resume
                | grammar::Verb::Next
                | grammar::Verb::Previous
                | grammar::Verb::Mute
                | grammar::Verb::Unmute
                | grammar::Verb::Dock
                | grammar::Verb::Up(Some(_))
                | grammar::Verb::Down(Some(_))
                | grammar::Verb::Set(Some(_), _),
            ) => able.clone(),
            _ => self.devices_by_action_words(words),
        };
        let mut candidates: Vec<usize> = able.iter().copied().filter(|d| specific.contains(d)).collect();
        if candidates.is_empty() {
            return Err(Refusal::new(NoCommandReason::NoDevice, "no device of this site is named"));
        }
        if candidates.len() > 1 {
            if let Some(area) = area {
                candidates.retain(|&d| self.catalog.devices[d].area.as_deref() == Some(area));
            }
        }
        match candidates.as_slice() {
            [one] => Ok(Targets {
                devices: vec![*one],
                explicit: true,
                label: self.catalog.devices[*one].name.clone(),
                requests: 1,
                any_kind: false,
            }),
            [] => Err(Refusal::new(NoCommandReason::Ambiguous, "several devices could do that, none of them here")),
            _ => Err(Refusal::new(NoCommandReason::Ambiguous, "several devices could do that; name one")),
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

/// The devices one clause targets.
#[derive(Debug, Clone)]
struct Targets {
    devices: Vec<usize>,
    /// Named one by one (a refusal names them; the model may choose their action).
    explicit: bool,
    /// How a message names them ("lights in the kitchen").
    label: String,
    /// How many requests they count as (`limits.max_commands`): one per named
    /// device, one for a whole group.
    requests: usize,
    /// A group of every kind ("the kitchen", "everything"), not of one kind.
    any_kind: bool,
}

/// Whether `phrase` occurs in `words` as consecutive words.
fn contains_phrase(words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty() && words.windows(phrase.len()).any(|w| w == phrase)
}

/// Kinds that "everything" and a bare room ("turn off the kitchen") include:
/// never what opens, locks, waters or moves (the water main is not "everything off").
impl Interpreter {
    /// Whether a word is one a request may hold without naming a device: a
    /// request or little word, a control word, a number, a kind word, a verb,
    /// or a word of one of this site's places. Any other word beside a kind
    /// or a place names something the site may not have.
    fn is_request_word(&self, w: &str) -> bool {
        REQUEST_WORDS.contains(&w)
            || linker::is_glue(w)
            || CONTROL_WORDS.contains(&w)
            || w.parse::<i64>().is_ok()
            || grammar::kind_of_word(w).is_some()
            || grammar::verb(&[w.to_owned()]).is_some()
            || self.places.iter().any(|(phrase, _)| phrase.iter().any(|p| p == w))
    }

    /// The place a clause names that the site does not have: the word after
    /// "in"/"at" ("in the attic"), or before "floor" ("on the third floor"),
    /// when it is no place, kind, name word or request word of this site.
    fn unknown_place(&self, clause_words: &[String]) -> Option<String> {
        let known = |w: &str| self.is_request_word(w);
        for (i, word) in clause_words.iter().enumerate() {
            let after = match word.as_str() {
                "in" | "at" => clause_words[i + 1..].iter().find(|w| !matches!(w.as_str(), "the" | "my" | "our")),
                _ => None,
            };
            if let Some(place) = after.filter(|w| !known(w)) {
                return Some(place.clone());
            }
            if word == "floor" && i > 0 && !known(&clause_words[i - 1]) {
                return Some(format!("{} floor", clause_words[i - 1]));
            }
        }
        None
    }
}

fn in_everything(kind: Option<Kind>) -> bool {
    matches!(kind, Some(Kind::Light | Kind::Switch | Kind::Fan | Kind::MediaPlayer | Kind::Climate) | None)
}

/// How alike a word beside a kind word must sound to one of the device's own
/// words (phonetic keys) for a near miss to stand: a misheard name ("memory"
/// for "bedroom") is kept, another thing ("coffee plug" for "kettle plug") not.
const STRAY_SIMILARITY: f64 = 0.6;

/// Rooms and places of homes and their grounds. One of these in a request is
/// a place, even when the site has none of that name: it is never heard as
/// another name that sounds like it.
const COMMON_PLACES: &[&str] = &[
    "kitchen",
    "bedroom",
    "bathroom",
    "garden",
    "garage",
    "attic",
    "basement",
    "cellar",
    "office",
    "study",
    "hallway",
    "lounge",
    "porch",
    "patio",
    "deck",
    "yard",
    "backyard",
    "driveway",
    "nursery",
    "laundry",
    "pantry",
    "closet",
    "dining",
    "living",
    "guest",
    "loft",
    "shed",
    "workshop",
    "balcony",
    "terrace",
    "conservatory",
    "toilet",
    "lobby",
    "entrance",
    "stairs",
    "staircase",
    "landing",
    "utility",
    "playroom",
    "den",
    "library",
    "gym",
    "pool",
    "sauna",
    "veranda",
    "roof",
    "kids",
    "ensuite",
    "washroom",
    "lavatory",
    "foyer",
    "mudroom",
    "greenhouse",
];

/// Words a request may hold besides names, places, little words and control
/// words; any other word beside a bare place ("the garden fountain") names
/// something the site may not have.
const REQUEST_WORDS: &[&str] = &[
    "our",
    "every",
    "everything",
    "here",
    "there",
    "can",
    "you",
    "could",
    "would",
    "will",
    "i",
    "want",
    "need",
    "like",
    "id",
    "lets",
    "let",
    "me",
    "us",
    "now",
    "just",
    "again",
    "room",
    "area",
    "floor",
    "house",
    "home",
    "whole",
    "entire",
    "hey",
    "hearken",
    "ok",
    "okay",
    "right",
    "away",
    "go",
    "get",
    "inside",
    "outside",
    "downstairs",
    "upstairs",
    "both",
    "degrees",
    "degree",
    "celsius",
    "percent",
    "temperature",
    "brightness",
    "volume",
    "position",
    "level",
    "bit",
    "little",
    "too",
    "very",
];

/// "everything", "all devices", "the whole house": every device in scope.
fn everything(words: &[String]) -> bool {
    words.iter().any(|w| matches!(w.as_str(), "everything" | "everywhere"))
        || words.windows(2).any(|p| p[0] == "all" && matches!(p[1].as_str(), "devices" | "of" | "things"))
        || whole_site(words)
}

/// "the whole house", "the entire home", "all over the house".
fn whole_site(words: &[String]) -> bool {
    words.windows(2).any(|p| {
        matches!(p[0].as_str(), "whole" | "entire" | "all")
            && matches!(
                p[1].as_str(),
                "house" | "home" | "flat" | "apartment" | "site" | "building" | "plant" | "office"
            )
    })
}

/// "lights", "blinds": how messages name a kind.
fn kind_plural(kind: Kind) -> String {
    match kind {
        Kind::MediaPlayer => "media players".to_owned(),
        Kind::LawnMower => "lawn mowers".to_owned(),
        Kind::Switch => "switches".to_owned(),
        Kind::Climate => "thermostats".to_owned(),
        other => format!("{}s", other.name()),
    }
}

/// "light", "blind": one of a kind in messages.
fn kind_singular(kind: Kind) -> String {
    match kind {
        Kind::MediaPlayer => "media player".to_owned(),
        Kind::LawnMower => "lawn mower".to_owned(),
        Kind::Climate => "thermostat".to_owned(),
        other => other.name().to_owned(),
    }
}

/// Whether a kind word is singular ("light", not "lights"; "music" is neither).
fn kind_words_singular(word: &str) -> bool {
    !word.ends_with('s') && word != "music"
}

/// What "the music" is: a player that plays and is no screen.
fn plays_music(device: &Device) -> bool {
    let screen = std::iter::once(&device.name)
        .chain(&device.aliases)
        .any(|n| normalize::normalize(n).iter().any(|w| matches!(w.as_str(), "tv" | "television" | "projector")));
    (device.has_action("play") || device.has_action("pause")) && !screen
}

/// Every area and floor name and alias of `catalog`, normalized, with the place it names.
fn place_phrases(catalog: &Catalog) -> Vec<(Vec<String>, String)> {
    let mut phrases = Vec::new();
    for area in &catalog.areas {
        for name in std::iter::once(&area.name).chain(&area.aliases) {
            phrases.push((normalize::normalize(name), area.name.clone()));
        }
    }
    for floor in &catalog.floors {
        for name in std::iter::once(&floor.name).chain(&floor.aliases) {
            phrases.push((normalize::normalize(name), floor.name.clone()));
        }
    }
    phrases
}

/// "lights" → "light": enough English plural for matching names.
fn singular(word: &str) -> String {
    word.strip_suffix('s').filter(|stem| stem.len() >= 3 && !stem.ends_with('s')).unwrap_or(word).to_owned()
}

enum Plan {
    NoCommand(Refusal),
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
    /// Requests the utterance makes (`limits.max_commands`): a group is one.
    requests: usize,
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
        let Plan::Ask(asked) = interpreter.plan_words("turn off all the lights", None) else { panic!("no plan") };
        let devices: Vec<&str> = asked.settled.iter().map(|c| c.device.as_str()).collect();
        // Every device of kind light: the lamp is one (its kind comes from its name).
        assert_eq!(devices, ["living_room_lamp", "kitchen_light", "bedroom_light", "porch_light"]);
        assert!(asked.settled.iter().all(|c| c.action == "turn_off"));
        assert!(asked.narrowed.is_empty());
    }

    #[test]
    fn a_near_miss_right_before_a_kind_word_of_another_kind_is_no_substitute() {
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(home(), client, InterpreterConfig::default());
        // A noisy room's "turn off all the lights": "over" sounds like the vacuum's alias "hoover".
        let plan = interpreter.plan_words("turn off over lights", None);
        let devices: Vec<String> = match &plan {
            Plan::Ask(asked) => asked.settled.iter().map(|c| c.device.clone()).collect(),
            _ => Vec::new(),
        };
        assert!(!devices.contains(&"robot_vacuum".to_owned()), "{devices:?}");
        let Plan::Ask(asked) = interpreter.plan_words("stop the hoover", None) else { panic!("no plan") };
        assert_eq!(asked.settled.iter().map(|c| c.device.as_str()).collect::<Vec<_>>(), ["robot_vacuum"]);
    }

    #[test]
    fn a_group_and_its_members_selected_together_command_each_member_once() {
        let text = r#"
site = "home"
[[devices]]
id = "lounge_lamp"
name = "floor lamp"
area = "lounge"
protocol = "zigbee2mqtt"
topic = "zigbee2mqtt/lounge/floor lamp"
actions = ["turn_on", "turn_off"]
[[devices]]
id = "lounge_spot"
name = "spot light"
area = "lounge"
protocol = "zigbee2mqtt"
topic = "zigbee2mqtt/lounge/spot light"
actions = ["turn_on", "turn_off"]
[[devices]]
id = "lounge_lights"
name = "lounge group"
kind = "light"
area = "lounge"
protocol = "zigbee2mqtt"
topic = "zigbee2mqtt/lounge/lights"
actions = ["turn_on", "turn_off"]
members = ["lounge_lamp", "lounge_spot"]
[[devices]]
id = "porch_group"
name = "porch group"
kind = "light"
area = "porch"
protocol = "zigbee2mqtt"
topic = "zigbee2mqtt/porch group"
actions = ["turn_on", "turn_off"]
members = ["lounge_spot"]
"#;
        let catalog = Catalog::parse(Path::new("groups.toml"), text).unwrap();
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(catalog, client, InterpreterConfig::default());
        let settled = |words: &str| -> Vec<String> {
            let Plan::Ask(asked) = interpreter.plan_words(words, None) else { panic!("no plan for {words}") };
            asked.settled.iter().map(|c| c.device.clone()).collect()
        };
        // The lounge's lights: both lamps, not also their group.
        assert_eq!(settled("turn off the lights in the lounge"), ["lounge_lamp", "lounge_spot"]);
        // Every light: the members once each; the porch group, whose member is selected, is not sent either.
        assert_eq!(settled("turn on all the lights"), ["lounge_lamp", "lounge_spot"]);
        // A group selected without its members is commanded: the porch's light is its group.
        assert_eq!(settled("turn on the lights in the porch"), ["porch_group"]);
        // Named, a group is one device.
        assert_eq!(settled("turn on the lounge group"), ["lounge_lights"]);
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
        assert!(matches!(
            interpreter.plan_words("setting the volume to 30", None),
            Plan::NoCommand(Refusal { reason: NoCommandReason::Ambiguous, .. })
        ));
        let Plan::Ask(asked) = interpreter.plan_words("skip to the next track", None) else { panic!("no plan") };
        assert_eq!(asked.settled[0].device, "kitchen_speaker");
    }

    #[test]
    fn the_model_chooses_only_among_actions_the_words_allow() {
        let client = ChatClient::new("http://127.0.0.1:9", None, "none", Duration::from_secs(1)).unwrap();
        let interpreter = Interpreter::new(home(), client, InterpreterConfig::default());
        // A bare number to a light is its brightness, though it has a colour temperature too.
        let Plan::Ask(asked) = interpreter.plan_words("at the kitchen light right us to 200", None) else {
            panic!("no plan")
        };
        assert_eq!(
            asked.settled,
            [Command { device: "kitchen_light".into(), action: "set_brightness".into(), value: Some(200) }]
        );
        // Said with its attribute, the colour temperature.
        let Plan::Ask(asked) = interpreter.plan_words("kitchen light colour temperature 300", None) else {
            panic!("no plan")
        };
        assert_eq!(
            asked.settled,
            [Command { device: "kitchen_light".into(), action: "set_color_temp".into(), value: Some(300) }]
        );
        // "off" is never play: the music (what can play) pauses.
        let Plan::Ask(asked) = interpreter.plan_words("turn off the music", None) else { panic!("no plan") };
        assert_eq!(asked.settled, [Command { device: "kitchen_speaker".into(), action: "pause".into(), value: None }]);
    }
}
