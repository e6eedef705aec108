//! The inference stage of the daemon: for each utterance, speech-to-text,
//! activation, intent, and the confirmation policy, one utterance at a time
//! (two ggml engines computing at once on a small box collapse). Inference
//! runs in the engine processes; this task only awaits their HTTP answers,
//! so the runtime never blocks. Commands go on to the MQTT stage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::activation::{confirmation_answer, strip_wake_phrase};
use super::control::Control;
use super::dispatch::Dispatch;
use super::metrics::Metrics;
use super::source::Heard;
use super::supervisor::{Endpoint, Supervisor};
use super::Reports;
use crate::audit::AuditLog;
use crate::command::Command;
use crate::config::{ActivationMode, Config};
use crate::nlu::client::ChatClient;
use crate::nlu::{Interpreter, NluError};
use crate::second_hearing::hear_until_complete;
use crate::stt::SttClient;
use crate::{events, millis};

/// Commands waiting for a confirmation.
struct Pending {
    id: u64,
    commands: Vec<Command>,
    audit_ref: Option<u64>,
    expires: tokio::time::Instant,
    utterance: u64,
}

/// Everything the worker needs.
pub struct Worker {
    /// The daemon's configuration.
    pub config: Config,
    /// The intent stage (client swapped when the engine restarts).
    pub interpreter: Arc<Interpreter>,
    /// The speech engine.
    pub stt: Arc<Supervisor>,
    /// The intent engine.
    pub intent: Arc<Supervisor>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Report lines.
    pub reports: Reports,
    /// The MQTT stage.
    pub dispatch: mpsc::Sender<Dispatch>,
    /// Events go out through the MQTT link.
    pub link: crate::mqtt::CommandLink,
    /// The recognizer's initial prompt: the catalog's names, so it hears "porch light", not "boat light".
    pub stt_prompt: Option<String>,
    /// The prompts of further transcriptions of an utterance whose first reading
    /// misses something, in order (see [`crate::second_hearing`]); empty: none.
    pub stt_retry_prompts: Vec<String>,
}

struct State {
    stt_client: Option<(u64, SttClient)>,
    intent_generation: u64,
    armed_until: Option<tokio::time::Instant>,
    pending: Option<Pending>,
    next_confirmation: u64,
}

impl Worker {
    /// Runs until the utterance channel closes (the source stopped and every
    /// utterance it heard is handled); pending confirmations are then cancelled.
    pub async fn run(self, mut utterances: mpsc::Receiver<Heard>, mut control: mpsc::Receiver<Control>) {
        let mut state = State {
            stt_client: None,
            intent_generation: self.intent.endpoint().borrow().as_ref().map_or(0, |e| e.generation),
            armed_until: None,
            pending: None,
            next_confirmation: 1,
        };
        let mut intent_endpoint = self.intent.endpoint();
        let mut control_open = true;
        loop {
            let expiry = state.pending.as_ref().map(|p| p.expires);
            tokio::select! {
                biased;
                heard = utterances.recv() => match heard {
                    Some(heard) => {
                        let span = tracing::info_span!("utterance", id = heard.id);
                        self.handle(heard, &mut state).instrument(span).await;
                    }
                    None => break,
                },
                () = sleep_until(expiry) => self.resolve_pending(&mut state, None, "expired", "timeout", Instant::now()).await,
                control_message = control.recv(), if control_open => match control_message {
                    Some(Control::Listen) => {
                        state.armed_until = Some(tokio::time::Instant::now() + self.activation_window());
                    }
                    Some(Control::Confirm { id, confirm }) => {
                        let decision = if confirm { "confirmed" } else { "cancelled" };
                        self.resolve_pending(&mut state, id, decision, "mqtt", Instant::now()).await;
                    }
                    None => control_open = false,
                },
                changed = intent_endpoint.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let current = intent_endpoint.borrow_and_update().clone();
                    if let Some(endpoint) = current {
                        self.use_intent_engine(&endpoint, &mut state).await;
                    }
                }
            }
        }
        self.resolve_pending(&mut state, None, "cancelled", "shutdown", Instant::now()).await;
    }

    fn activation_window(&self) -> Duration {
        Duration::from_millis(self.config.activation.window_ms)
    }

    /// Points the interpreter at a (re)started intent engine and warms its prompt cache.
    async fn use_intent_engine(&self, endpoint: &Endpoint, state: &mut State) {
        if endpoint.generation == state.intent_generation {
            return;
        }
        match ChatClient::new(&endpoint.url, endpoint.token.clone(), "local", self.config.intent.timeout()) {
            Ok(client) => {
                self.interpreter.set_client(client);
                state.intent_generation = endpoint.generation;
                if let Err(e) = self.interpreter.warm_up().await {
                    tracing::warn!(error = %e, "intent engine warm-up failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot make an intent client"),
        }
    }

    async fn stt_client(&self, state: &mut State) -> Option<SttClient> {
        let wait = Duration::from_millis(self.config.engines.wait_for_engine_ms);
        let endpoint = self.stt.wait_up(wait).await?;
        if let Some((generation, client)) = &state.stt_client {
            if *generation == endpoint.generation {
                return Some(client.clone());
            }
        }
        let client = SttClient::new(&endpoint.url, endpoint.token.clone(), self.config.stt.timeout()).ok()?;
        state.stt_client = Some((endpoint.generation, client.clone()));
        Some(client)
    }

    async fn handle(&self, heard: Heard, state: &mut State) {
        let queue = heard.at.elapsed();
        self.metrics.observe("queue", queue);
        let mut report = Map::new();
        report.insert("utterance".into(), json!(heard.id));
        report.insert("start_ms".into(), json!(heard.segment.start_ms));
        report.insert("end_ms".into(), json!(heard.segment.end_ms));
        report.insert("cut".into(), json!(heard.segment.cut));
        let mut latency = json!({"trailing_silence": self.config.audio.end_silence_ms, "queue": millis(queue)});

        // Speech to text.
        let transcript = match self.stt_client(state).await {
            None => Err("speech engine down (restarting)".to_owned()),
            Some(client) => {
                let prompt = self.stt_prompt.as_deref();
                client.transcribe(&heard.segment.samples, prompt).await.map_err(|e| e.to_string())
            }
        };
        let transcript = match transcript {
            Ok(t) => t,
            Err(error) => return self.not_handled(report, latency, "stt", &error, &heard).await,
        };
        latency["stt"] = json!(millis(transcript.latency));
        self.metrics.observe("stt", transcript.latency);
        report.insert("text".into(), json!(transcript.text));

        // A spoken answer to a pending confirmation.
        if state.pending.is_some() {
            if let Some(confirm) = confirmation_answer(&transcript.text) {
                report.insert("latency_ms".into(), latency);
                report.insert("answer".into(), json!(if confirm { "confirm" } else { "cancel" }));
                self.audit_utterance(&report, true);
                self.metrics.count("utterances", "confirmation_answer");
                let _ = self.reports.send(Value::Object(report)).await;
                let decision = if confirm { "confirmed" } else { "cancelled" };
                return self.resolve_pending(state, None, decision, "voice", heard.at).await;
            }
        }

        // Activation.
        let request = match self.activated(&transcript.text, state) {
            Some(request) => request,
            None => {
                report.insert("activated".into(), json!(false));
                report.insert("latency_ms".into(), latency);
                self.audit_utterance(&report, false);
                self.metrics.count("utterances", "not_activated");
                let _ = self.reports.send(Value::Object(report)).await;
                return;
            }
        };
        report.insert("activated".into(), json!(true));
        if request.is_empty() {
            // The wake phrase alone: the next utterance is the command.
            state.armed_until = Some(tokio::time::Instant::now() + self.activation_window());
            report.insert("commands".into(), json!([]));
            report.insert("latency_ms".into(), latency);
            self.audit_utterance(&report, true);
            self.metrics.count("utterances", "wake_phrase");
            let _ = self.reports.send(Value::Object(report)).await;
            return;
        }

        // Intent.
        let mut interpretation = match self.interpret(&request, state).await {
            Ok(i) => i,
            Err(e) => {
                let stage = if matches!(e, NluError::Engine(_)) { "intent" } else { "validation" };
                return self.not_handled(report, latency, stage, &e.to_string(), &heard).await;
            }
        };
        self.metrics.observe("nlu", interpretation.latency);
        let mut nlu_latency = interpretation.latency;

        // Something not heard: further, primed transcriptions.
        if let Some((_, client)) = &state.stt_client {
            let request_of = |text: &str| Some(self.request_after_activation(text));
            let samples = &heard.segment.samples;
            let first = (transcript.text.clone(), interpretation);
            let again = hear_until_complete(
                client,
                &self.interpreter,
                samples,
                &self.stt_retry_prompts,
                &request,
                first,
                request_of,
            )
            .await;
            if again.transcripts.len() > 1 {
                self.metrics.observe("stt_retry", again.stt_latency);
                self.metrics.count("stt_retries", if again.text == transcript.text { "unused" } else { "used" });
                latency["stt"] = json!(millis(transcript.latency + again.stt_latency));
                latency["stt_retry"] = json!(millis(again.stt_latency));
                report.insert("transcripts".into(), json!(again.transcripts));
                report.insert("text".into(), json!(again.text));
            }
            nlu_latency += again.nlu_latency;
            interpretation = again.interpretation;
        }
        latency["nlu"] = json!(millis(nlu_latency));
        let confirm: Vec<Command> = interpretation.needs_confirmation.clone();
        let immediate: Vec<Command> =
            interpretation.commands.iter().filter(|c| !confirm.contains(c)).cloned().collect();
        report.insert("needs_confirmation".into(), json!(confirm));
        if let Some(reason) = interpretation.no_command_reason {
            report.insert("no_command_reason".into(), json!(reason));
        }
        report.insert("latency_ms".into(), latency);
        let mut audited = report.clone();
        audited.insert("commands".into(), json!(interpretation.commands));
        let audit_ref = self.audit_utterance(&audited, true);
        report.insert("audit_seq".into(), json!(audit_ref));

        if !confirm.is_empty() {
            self.request_confirmation(state, confirm, audit_ref, &heard).await;
            report.insert("confirmation".into(), json!(state.next_confirmation - 1));
        }
        self.metrics.count("utterances", if interpretation.commands.is_empty() { "no_command" } else { "commands" });
        if immediate.is_empty() {
            report.insert("commands".into(), json!([]));
            let total = heard.at.elapsed();
            if let Some(l) = report.get_mut("latency_ms") {
                l["total"] = json!(millis(total));
            }
            let _ = self.reports.send(Value::Object(report)).await;
            return;
        }
        let dispatch =
            Dispatch { report, commands: immediate, audit_ref, heard_at: heard.at, span: tracing::Span::current() };
        // Backpressure: waits while the MQTT stage is full.
        let _ = self.dispatch.send(dispatch).await;
    }

    /// The request to interpret, or `None` when the utterance is not for hearken.
    fn activated(&self, text: &str, state: &mut State) -> Option<String> {
        let now = tokio::time::Instant::now();
        let armed = state.armed_until.take().is_some_and(|until| now <= until);
        match self.config.activation.mode {
            ActivationMode::Always => Some(text.to_owned()),
            ActivationMode::WakePhrase => {
                strip_wake_phrase(text, &self.config.activation.wake_phrase).or(armed.then(|| text.to_owned()))
            }
            ActivationMode::Mqtt => armed.then(|| text.to_owned()),
        }
    }

    /// The request in a transcript of an utterance already activated: without
    /// the wake phrase when it is there.
    fn request_after_activation(&self, text: &str) -> String {
        match self.config.activation.mode {
            ActivationMode::WakePhrase => {
                strip_wake_phrase(text, &self.config.activation.wake_phrase).unwrap_or_else(|| text.to_owned())
            }
            ActivationMode::Always | ActivationMode::Mqtt => text.to_owned(),
        }
    }

    /// Interprets, waiting once for a restarting intent engine when the model was needed.
    async fn interpret(&self, text: &str, state: &mut State) -> Result<crate::nlu::Interpretation, NluError> {
        match self.interpreter.interpret(text).await {
            Err(NluError::Engine(e)) => {
                tracing::warn!(error = %e, "intent engine unavailable; waiting for it");
                let wait = Duration::from_millis(self.config.engines.wait_for_engine_ms);
                // The endpoint watcher in `run` cannot run while this utterance is handled: switch here.
                if let Some(endpoint) = self.intent.wait_up(wait).await {
                    self.use_intent_engine(&endpoint, state).await;
                }
                self.interpreter.interpret(text).await
            }
            other => other,
        }
    }

    async fn request_confirmation(
        &self,
        state: &mut State,
        commands: Vec<Command>,
        audit_ref: Option<u64>,
        heard: &Heard,
    ) {
        if state.pending.is_some() {
            self.resolve_pending(state, None, "superseded", "new_request", Instant::now()).await;
        }
        let id = state.next_confirmation;
        state.next_confirmation += 1;
        let window = Duration::from_millis(self.config.confirmation.window_ms);
        let mut body = Map::new();
        body.insert("confirmation".into(), json!(id));
        body.insert("ref".into(), json!(audit_ref));
        body.insert("commands".into(), json!(commands));
        body.insert("window_ms".into(), json!(self.config.confirmation.window_ms));
        if let Err(e) = self.audit.append("confirmation_requested", body) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        let site = &self.link.catalog().site;
        let event =
            events::confirmation_needed_event(site, id, &commands, self.config.confirmation.window_ms, audit_ref);
        let _ = self.link.publish_event(self.link.catalog().events_topic(), event.to_string().into_bytes()).await;
        state.pending = Some(Pending {
            id,
            commands,
            audit_ref,
            expires: tokio::time::Instant::now() + window,
            utterance: heard.id,
        });
    }

    /// Confirms or cancels the pending commands (if `id` matches, when given);
    /// `decided_at` is when the answer was heard (latencies count from there).
    async fn resolve_pending(&self, state: &mut State, id: Option<u64>, decision: &str, by: &str, decided_at: Instant) {
        let Some(pending) = state.pending.take_if(|p| id.is_none_or(|id| id == p.id)) else {
            if id.is_some() {
                tracing::warn!(?id, "confirmation for nothing pending ignored");
            }
            return;
        };
        let mut body = Map::new();
        body.insert("confirmation".into(), json!(pending.id));
        body.insert("ref".into(), json!(pending.audit_ref));
        body.insert("decision".into(), json!(decision));
        body.insert("by".into(), json!(by));
        let audit_ref = match self.audit.append("confirmation", body) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the audit log");
                pending.audit_ref
            }
        };
        self.metrics.count("confirmations", decision);
        let site = &self.link.catalog().site;
        let event = events::confirmation_event(site, pending.id, decision, by, audit_ref);
        let _ = self.link.publish_event(self.link.catalog().events_topic(), event.to_string().into_bytes()).await;
        let mut report = Map::new();
        report.insert("confirmation".into(), json!(pending.id));
        report.insert("utterance".into(), json!(pending.utterance));
        report.insert("decision".into(), json!(decision));
        report.insert("by".into(), json!(by));
        if decision == "confirmed" {
            let dispatch = Dispatch {
                report,
                commands: pending.commands,
                audit_ref,
                heard_at: decided_at,
                span: tracing::info_span!("confirmation", id = pending.id),
            };
            let _ = self.dispatch.send(dispatch).await;
        } else {
            report.insert("commands".into(), json!([]));
            let _ = self.reports.send(Value::Object(report)).await;
        }
    }

    /// Appends the utterance record (before anything is published). Utterances
    /// not meant for hearken are recorded without their words.
    fn audit_utterance(&self, report: &Map<String, Value>, activated: bool) -> Option<u64> {
        let mut body = report.clone();
        if !activated {
            body.remove("text");
        }
        body.insert("route".into(), self.route());
        match self.audit.append("utterance", body) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the audit log");
                None
            }
        }
    }

    fn route(&self) -> Value {
        let place = |configured: &Option<String>| match configured {
            Some(url) => json!({"where": "remote", "url": url, "reason": "configured server"}),
            None => json!({"where": "local", "reason": "local engine"}),
        };
        json!({"stt": place(&self.config.stt.url), "intent": place(&self.config.intent.url)})
    }

    /// An utterance that could not be handled: reported and audited, never silently lost.
    async fn not_handled(
        &self,
        mut report: Map<String, Value>,
        latency: Value,
        stage: &str,
        error: &str,
        heard: &Heard,
    ) {
        tracing::warn!(stage, error, "utterance not handled");
        let mut latency = latency;
        latency["total"] = json!(millis(heard.at.elapsed()));
        report.insert("latency_ms".into(), latency);
        report.insert("error".into(), json!({"stage": stage, "message": error}));
        report.insert("commands".into(), json!([]));
        let seq = self.audit_utterance(&report, true);
        report.insert("audit_seq".into(), json!(seq));
        self.metrics.count("utterances", "not_handled");
        let site = &self.link.catalog().site;
        let event = events::not_handled_event(site, heard.id, stage, error, seq);
        let _ = self.link.publish_event(self.link.catalog().events_topic(), event.to_string().into_bytes()).await;
        let _ = self.reports.send(Value::Object(report)).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
