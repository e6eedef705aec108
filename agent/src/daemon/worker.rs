//! The inference stage of the daemon: for each utterance, speech-to-text,
//! activation, intent, and the confirmation policy. Inference runs in the
//! engine processes; this stage only awaits their HTTP answers, so the
//! runtime never blocks. Commands go on to the MQTT stage.
//!
//! The local engines take one utterance at a time (two ggml engines
//! computing at once on a small box collapse): the [`LocalLane`]. Without an
//! online fallback utterances are handled one after another. With one,
//! up to `online.max_concurrent` are handled at once: the router sends each
//! stage that the lane cannot finish within the budget (or whose engine is
//! down) online, and keeps the rest local.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::dispatch::Dispatch;
use super::metrics::Metrics;
use super::reload;
use super::report::{Announcer, Report, StageError};
use crate::audio::source::{Heard, Input, UtteranceIds};
use crate::audit::AuditLog;
use crate::catalog::command::Command;
use crate::config::{ActivationMode, Config};
use crate::intent::ChatClient;
use crate::intent::{Interpretation, Interpreter, NluError, NoCommandReason, Planned};
use crate::local::supervisor::{Endpoint, Supervisor};
use crate::local::{LocalLane, Turn};
use crate::millis;
use crate::mqtt::control::Control;
use crate::mqtt::events;
use crate::online::router::{decide, Place, Reason, Route, Signals, Thresholds};
use crate::online::{Attempt, Online};
use crate::policy::activation::{confirmation_answer, strip_wake_phrase};
use crate::policy::conversation::{Conversation, DecidedBy, Decision, Pending};
use crate::stt::{free_reading, hear_until_complete};
use crate::stt::{Priming, SttClient, SttResult};

/// Everything the worker needs.
pub struct Worker {
    /// The daemon's configuration.
    pub config: Config,
    /// What the catalog makes of the stages: replaced whole by a reload,
    /// never while an utterance is in hand.
    pub site: std::sync::RwLock<Arc<SiteView>>,
    /// The speech engine.
    pub stt: Arc<Supervisor>,
    /// The intent engine.
    pub intent: Arc<Supervisor>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where finished reports go (report lines, text replies, Home Assistant).
    pub announcer: Announcer,
    /// The MQTT stage.
    pub dispatch: mpsc::Sender<Dispatch>,
    /// Events go out through the MQTT link.
    pub link: crate::mqtt::CommandLink,
    /// The online fallback, when configured and allowed by the privacy policy.
    pub online: Option<Arc<Online>>,
    /// The local engines' lane.
    pub lane: LocalLane,
    /// Utterance ids, shared with the source: text messages get theirs here.
    pub ids: UtteranceIds,
}

/// The stages as one catalog makes them: the interpreter (its words, its
/// prompt) and the recognizer's prompts.
pub struct SiteView {
    /// The intent stage (client swapped when the engine restarts).
    pub interpreter: Arc<Interpreter>,
    /// The recognizer's initial prompt: the catalog's names, so it hears "porch light", not "boat light".
    pub stt_prompt: Option<String>,
    /// The prompts of further transcriptions of an utterance whose first reading
    /// misses something, in order (see [`crate::stt::second_hearing`]); empty: none.
    pub stt_retry_prompts: Vec<String>,
    /// The phrases every transcription favours while decoding (`stt.vocabulary_from_catalog`).
    pub stt_vocabulary: Vec<String>,
}

impl SiteView {
    /// The view of `interpreter`'s catalog under the daemon's speech settings.
    pub fn new(interpreter: Interpreter, config: &Config) -> SiteView {
        let catalog = interpreter.catalog();
        let stt_prompt = config.stt.prompt_from_catalog.then(|| crate::stt::catalog_prompt(catalog));
        let stt_retry_prompts = if config.stt.retry_with_catalog_prompt && !config.stt.prompt_from_catalog {
            crate::stt::prompts(catalog)
        } else {
            Vec::new()
        };
        let stt_vocabulary =
            if config.stt.vocabulary_from_catalog { crate::stt::catalog_vocabulary(catalog) } else { Vec::new() };
        SiteView { interpreter: Arc::new(interpreter), stt_prompt, stt_retry_prompts, stt_vocabulary }
    }
}

/// What utterances handled at once share.
struct State {
    stt_client: Mutex<Option<(u64, SttClient)>>,
    intent_generation: AtomicU64,
    conversation: Mutex<Conversation>,
}

impl State {
    fn conversation(&self) -> std::sync::MutexGuard<'_, Conversation> {
        self.conversation.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where one stage ran and how: the route, and the online tries if any.
struct Leg {
    route: Route,
    attempts: Vec<Attempt>,
    /// Online failed or was abandoned; the stage ran locally after all.
    fell_back: Option<String>,
}

impl Leg {
    fn new(route: Route) -> Leg {
        Leg { route, attempts: Vec::new(), fell_back: None }
    }

    /// Keeps the online tries; the answer, or `None` when the stage falls back local.
    fn served<T>(&mut self, served: crate::online::Served<T>, stage: &str) -> Option<T> {
        self.attempts = served.attempts;
        match served.result {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::warn!(stage, error = %e, "online stage failed; falling back to the local engine");
                self.fell_back = Some(e.to_string());
                None
            }
        }
    }

    fn to_json(&self) -> Value {
        let mut leg = json!({"where": self.route.place, "reason": self.route.reason});
        if !self.attempts.is_empty() {
            leg["attempts"] = json!(self.attempts);
        }
        if let Some(error) = &self.fell_back {
            leg["fell_back"] = json!({"where": "local", "after": error});
        }
        leg
    }
}

impl Worker {
    /// Runs until the utterance channel closes (the source stopped and every
    /// utterance it heard is handled); pending confirmations are then cancelled.
    pub async fn run(self, mut utterances: mpsc::Receiver<Heard>, mut control: mpsc::Receiver<Control>) {
        let state = Arc::new(State {
            stt_client: Mutex::new(None),
            intent_generation: AtomicU64::new(self.intent.endpoint().borrow().as_ref().map_or(0, |e| e.generation)),
            conversation: Mutex::new(Conversation::default()),
        });
        let at_once = self.online.as_ref().map_or(1, |_| self.config.online.max_concurrent.max(1));
        let slots = Arc::new(tokio::sync::Semaphore::new(at_once));
        let worker = Arc::new(self);
        let mut handling = tokio::task::JoinSet::new();
        let mut intent_endpoint = worker.intent.endpoint();
        let mut control_open = true;
        loop {
            let expiry = state.conversation().deadline();
            tokio::select! {
                biased;
                heard = utterances.recv() => match heard {
                    Some(heard) => {
                        if !Worker::take(&worker, heard, &state, at_once, &slots, &mut handling).await {
                            break;
                        }
                    }
                    None => break,
                },
                () = sleep_until(expiry) => {
                    let expired = state.conversation().take_expired(tokio::time::Instant::now());
                    if let Some(pending) = expired {
                        worker.conclude(pending, Decision::Expired, DecidedBy::Timeout, Instant::now()).await;
                    }
                }
                control_message = control.recv(), if control_open => match control_message {
                    Some(Control::Listen) => {
                        state.conversation().arm(tokio::time::Instant::now(), worker.activation_window());
                    }
                    Some(Control::Confirm { id, confirm }) => {
                        let decision = if confirm { Decision::Confirmed } else { Decision::Cancelled };
                        worker.resolve_pending(&state, id, decision, DecidedBy::Mqtt, Instant::now()).await;
                    }
                    Some(Control::Reload { trigger }) => {
                        // Between utterances: the ones in hand finish on the catalog they began with.
                        while handling.join_next().await.is_some() {}
                        worker.reload_catalog(&state, trigger).await;
                    }
                    Some(Control::Text { text, request_id, area }) => {
                        let input = Input::Message { text, request_id };
                        let heard = Heard { id: worker.ids.next(), input, at: Instant::now(), area };
                        if !Worker::take(&worker, heard, &state, at_once, &slots, &mut handling).await {
                            break;
                        }
                    }
                    None => control_open = false,
                },
                changed = intent_endpoint.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let current = intent_endpoint.borrow_and_update().clone();
                    if let Some(endpoint) = current {
                        worker.use_intent_engine(&endpoint, &state).await;
                    }
                }
            }
        }
        while handling.join_next().await.is_some() {}
        worker.resolve_pending(&state, None, Decision::Cancelled, DecidedBy::Shutdown, Instant::now()).await;
    }

    /// Handles one utterance: here, or beside others when the online tier
    /// lets several run at once (waiting while that many are in hand, so the
    /// inputs back up). `false` when the worker is shutting down.
    async fn take(
        worker: &Arc<Worker>,
        heard: Heard,
        state: &Arc<State>,
        at_once: usize,
        slots: &Arc<tokio::sync::Semaphore>,
        handling: &mut tokio::task::JoinSet<()>,
    ) -> bool {
        let span = tracing::info_span!("utterance", id = heard.id);
        if at_once == 1 {
            worker.handle(heard, state).instrument(span).await;
        } else {
            let Ok(slot) = slots.clone().acquire_owned().await else { return false };
            let (worker, state) = (worker.clone(), state.clone());
            handling.spawn(async move {
                worker.handle(heard, &state).instrument(span).await;
                drop(slot);
            });
        }
        while handling.try_join_next().is_some() {}
        true
    }

    /// Reads the catalog file again and, if it passes, serves it from the
    /// next utterance on: the link subscribes to its devices first, the
    /// interpreter's words and the recognizer's prompts are rebuilt, the
    /// engine's prompt cache warmed for it; the engines keep running. A
    /// pending confirmation for a device that is gone is cancelled. Loaded or
    /// refused, the reload is audited and published.
    async fn reload_catalog(&self, state: &State, trigger: &'static str) {
        let started = Instant::now();
        let site = self.site();
        let loaded = match reload::prepare(&self.config, site.interpreter.catalog()) {
            Ok(loaded) => loaded,
            Err(error) => return self.catalog_rejected(trigger, &error).await,
        };
        let catalog = Arc::new(loaded.catalog.clone());
        if let Err(e) = self.link.use_catalog(catalog.clone()).await {
            return self.catalog_rejected(trigger, &e.to_string()).await;
        }
        let interpreter = site.interpreter.for_catalog(loaded.catalog);
        if let Err(e) = interpreter.warm_up().await {
            tracing::warn!(error = %e, "intent engine warm-up for the new catalog failed");
        }
        *self.site.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(SiteView::new(interpreter, &self.config));
        let orphaned = state.conversation().take_orphaned(|id| catalog.device(id).is_some());
        if let Some(pending) = orphaned {
            self.conclude(pending, Decision::Cancelled, DecidedBy::CatalogReload, Instant::now()).await;
        }
        let took = millis(started.elapsed());
        tracing::info!(sha256 = %loaded.sha256, devices = catalog.devices.len(), took_ms = took, trigger, "catalog reloaded");
        let mut body = Map::new();
        body.insert("trigger".into(), json!(trigger));
        body.insert("sha256".into(), json!(loaded.sha256));
        body.insert("devices".into(), json!(catalog.devices.len()));
        body.insert("added".into(), json!(loaded.added));
        body.insert("removed".into(), json!(loaded.removed));
        self.catalog_record("catalog_loaded", body, Some(took)).await;
    }

    /// A reload that did not happen: the old catalog keeps serving.
    async fn catalog_rejected(&self, trigger: &'static str, error: &str) {
        tracing::warn!(error, trigger, "catalog reload refused; the old catalog keeps serving");
        let mut body = Map::new();
        body.insert("trigger".into(), json!(trigger));
        body.insert("reason".into(), json!(error));
        self.catalog_record("catalog_rejected", body, None).await;
    }

    /// A reload's outcome: audited, published on the events topic, and
    /// printed as a `{"catalog": …}` line (with how long the swap took).
    async fn catalog_record(&self, kind: &'static str, mut body: Map<String, Value>, took_ms: Option<f64>) {
        let seq = self.audit.append(kind, body.clone()).ok();
        self.metrics.count("catalog_reloads", if kind == "catalog_loaded" { "loaded" } else { "rejected" });
        body.insert("type".into(), json!(kind));
        body.insert("site".into(), json!(self.link.site()));
        body.insert("ts".into(), json!(crate::now_rfc3339()));
        body.insert("audit_seq".into(), json!(seq));
        let event = Value::Object(body.clone()).to_string().into_bytes();
        let _ = self.link.publish_event(self.link.events_topic(), event).await;
        if let Some(took) = took_ms {
            body.insert("took_ms".into(), json!(took));
        }
        let _ = self.announcer.reports.send(json!({"catalog": body})).await;
    }

    /// The stages as the current catalog makes them.
    fn site(&self) -> Arc<SiteView> {
        self.site.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn activation_window(&self) -> Duration {
        Duration::from_millis(self.config.activation.window_ms)
    }

    /// Points the interpreter at a (re)started intent engine and warms its prompt cache.
    async fn use_intent_engine(&self, endpoint: &Endpoint, state: &State) {
        if endpoint.generation == state.intent_generation.load(Ordering::Relaxed) {
            return;
        }
        match ChatClient::new(&endpoint.url, endpoint.token.clone(), "local", self.config.intent.timeout()) {
            Ok(client) => {
                let site = self.site();
                site.interpreter.set_client(client);
                state.intent_generation.store(endpoint.generation, Ordering::Relaxed);
                if let Err(e) = site.interpreter.warm_up().await {
                    tracing::warn!(error = %e, "intent engine warm-up failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot make an intent client"),
        }
    }

    async fn stt_client(&self, state: &State) -> Option<SttClient> {
        let wait = Duration::from_millis(self.config.engines.wait_for_engine_ms);
        let endpoint = self.stt.wait_up(wait).await?;
        let mut cached = state.stt_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, client)) = &*cached {
            if *generation == endpoint.generation {
                return Some(client.clone());
            }
        }
        let client = SttClient::new(&endpoint.url, endpoint.token.clone(), self.config.stt.timeout())
            .ok()?
            .with_language(&self.config.stt.language);
        *cached = Some((endpoint.generation, client.clone()));
        Some(client)
    }

    /// The live signals for a routing decision; `remaining` is the local work
    /// left for this utterance, `holding` whether it already has the lane (then
    /// it waits for nobody).
    fn signals(&self, heard: &Heard, engine: &Supervisor, remaining: Duration, holding: bool) -> Signals {
        let local_wait = if holding { Duration::ZERO } else { self.lane.wait(self.lane.ahead()) };
        Signals {
            local_up: engine.endpoint().borrow().is_some(),
            local_wait,
            local_service: remaining,
            elapsed: heard.at.elapsed(),
            pressure: self.metrics.host(),
        }
    }

    fn record_route(&self, stage: &str, leg: &Leg) {
        let place = if leg.route.place == Place::Online { "online" } else { "local" };
        self.metrics.count_with("routes", &[("stage", stage), ("where", place), ("reason", leg.route.reason.as_str())]);
        for attempt in &leg.attempts {
            let outcome = attempt.outcome.as_str();
            self.metrics.count_with(
                "online_attempts",
                &[("stage", stage), ("endpoint", attempt.endpoint), ("outcome", outcome)],
            );
        }
    }

    /// Speech to text, local or online as the router decides; online failures
    /// fall back to the local engine. The turn is taken when the local engine is used.
    async fn transcribe(
        &self,
        heard: &Heard,
        samples: &[f32],
        state: &State,
        turn: &mut Option<Turn>,
    ) -> (Result<SttResult, String>, Leg) {
        let thresholds = Thresholds::of(&self.config.online);
        let route = match &self.online {
            None => Route::local(Reason::OnlineOff),
            Some(online) => {
                let remaining = self.lane.stt_service() + self.lane.intent_service();
                decide(&thresholds, &self.signals(heard, &self.stt, remaining, false), online.stt_refusal())
            }
        };
        let mut leg = Leg::new(route);
        let site = self.site();
        let priming = Priming { prompt: site.stt_prompt.as_deref(), vocabulary: &site.stt_vocabulary };
        if let (Place::Online, Some(online)) = (route.place, &self.online) {
            let served = online.transcribe(samples, priming, online.deadline(heard.at)).await;
            if let Some(transcript) = leg.served(served, "stt") {
                return (Ok(transcript), leg);
            }
        }
        *turn = Some(self.lane.enter().await);
        let transcript = match self.stt_client(state).await {
            None => Err("speech engine down (restarting)".to_owned()),
            Some(client) => client.transcribe(samples, priming).await.map_err(|e| e.to_string()),
        };
        if let Ok(t) = &transcript {
            self.lane.measured_stt(t.latency);
        }
        (transcript, leg)
    }

    /// The plan of `request` heard in the utterance's area, else the configured one.
    fn plan(site: &SiteView, heard: &Heard, request: &str) -> Planned {
        match &heard.area {
            Some(area) => site.interpreter.plan_in(request, Some(area)),
            None => site.interpreter.plan(request),
        }
    }

    /// Intent, local or online as the router decides (a device whose policy
    /// is `never` keeps it local); online failures fall back to the local engine.
    async fn interpret_routed(
        &self,
        heard: &Heard,
        request: &str,
        state: &State,
        turn: &mut Option<Turn>,
    ) -> (Result<Interpretation, NluError>, Leg) {
        let thresholds = Thresholds::of(&self.config.online);
        let site = self.site();
        let planned = Self::plan(&site, heard, request);
        let preview = planned.preview(site.interpreter.catalog());
        let route = match &self.online {
            None => Route::local(Reason::OnlineOff),
            // Settled by the words alone: no engine is asked, so nothing waits for one.
            Some(_) if !preview.asks_model => Route::local(Reason::WordsOnly),
            Some(online) => {
                let refusal = online.intent_refusal(&preview.devices);
                let signals = self.signals(heard, &self.intent, self.lane.intent_service(), turn.is_some());
                decide(&thresholds, &signals, refusal)
            }
        };
        let mut leg = Leg::new(route);
        if let (Place::Online, Some(online)) = (route.place, &self.online) {
            let served = online.interpret(&site.interpreter, &planned, online.deadline(heard.at)).await;
            if let Some(interpretation) = leg.served(served, "intent") {
                return (Ok(interpretation), leg);
            }
        }
        if turn.is_none() && preview.asks_model {
            *turn = Some(self.lane.enter().await);
        }
        let interpretation = self.interpret(&planned, state).await;
        if let Ok(i) = &interpretation {
            self.lane.measured_intent(i.latency);
        }
        (interpretation, leg)
    }

    async fn handle(&self, heard: Heard, state: &State) {
        let queue = heard.at.elapsed();
        self.metrics.observe("queue", queue);
        let mut report = Report { utterance: heard.id, ..Report::default() };
        report.latency().queue = Some(millis(queue));
        // `turn` is this utterance's hold on the local engines, once it needs them.
        let mut turn = None;
        report.area = heard.area.clone();
        let (transcript, samples) = match &heard.input {
            Input::Text { line, text } => {
                report.line = Some(*line);
                report.route = Some(Map::new());
                (SttResult { text: text.clone(), latency: Duration::ZERO, free_text: None }, None)
            }
            Input::Message { text, request_id } => {
                report.via = Some("mqtt");
                report.request_id = request_id.clone();
                report.route = Some(Map::new());
                (SttResult { text: text.clone(), latency: Duration::ZERO, free_text: None }, None)
            }
            Input::Speech(segment) => {
                report.start_ms = Some(segment.start_ms);
                report.end_ms = Some(segment.end_ms);
                report.cut = Some(segment.cut);
                report.latency().trailing_silence = Some(self.config.audio.end_silence_ms);
                let (transcript, stt_leg) = self.transcribe(&heard, &segment.samples, state, &mut turn).await;
                self.record_route("stt", &stt_leg);
                report.route.get_or_insert_with(Map::new).insert("stt".into(), stt_leg.to_json());
                let transcript = match transcript {
                    Ok(t) => t,
                    Err(error) => return self.not_handled(report, "stt", &error, &heard).await,
                };
                report.latency().stt = Some(millis(transcript.latency));
                report.free_text = transcript.free_text.clone();
                self.metrics.observe("stt", transcript.latency);
                // Further, primed transcriptions run on the local engines only when the first reading was theirs.
                let local_stt = stt_leg.route.place == Place::Local || stt_leg.fell_back.is_some();
                (transcript, local_stt.then_some(&segment.samples))
            }
        };
        let max_chars = self.config.limits.max_request_chars;
        if transcript.text.chars().count() > max_chars {
            report.text = Some(transcript.text.chars().take(max_chars).collect::<String>());
            let error = format!("the request is longer than limits.max_request_chars ({max_chars} characters)");
            return self.not_handled(report, "limits", &error, &heard).await;
        }
        report.text = Some(transcript.text.clone());
        if let Some(area) = &heard.area {
            let site = self.site();
            let areas = &site.interpreter.catalog().areas;
            if !areas.iter().any(|a| &a.name == area) {
                let known: Vec<&str> = areas.iter().map(|a| a.name.as_str()).collect();
                let error = format!("unknown area '{area}' (the catalog's areas: {})", known.join(", "));
                return self.not_handled(report, "input", &error, &heard).await;
            }
        }

        // A spoken answer to a pending confirmation.
        let pending = state.conversation().is_pending();
        if pending {
            if let Some(confirm) = confirmation_answer(&transcript.text) {
                report.answer = Some(if confirm { "confirm" } else { "cancel" });
                self.audit_utterance(&report, true);
                self.metrics.count("utterances", "confirmation_answer");
                self.send_report(&report).await;
                let decision = if confirm { Decision::Confirmed } else { Decision::Cancelled };
                return self.resolve_pending(state, None, decision, DecidedBy::Voice, heard.at).await;
            }
        }

        // Activation: a text message is addressed to hearken already.
        let message = matches!(heard.input, Input::Message { .. });
        let activated = if message {
            Some(self.request_after_activation(&transcript.text))
        } else {
            self.activated(&transcript.text, state)
        };
        let request = match activated {
            Some(request) => request,
            None => {
                report.activated = Some(false);
                self.audit_utterance(&report, false);
                self.metrics.count("utterances", "not_activated");
                self.send_report(&report).await;
                return;
            }
        };
        report.activated = Some(true);
        if request.is_empty() {
            // The wake phrase alone: the next utterance is the command.
            state.conversation().arm(tokio::time::Instant::now(), self.activation_window());
            report.commands = Some(json!([]));
            self.audit_utterance(&report, true);
            self.metrics.count("utterances", "wake_phrase");
            self.send_report(&report).await;
            return;
        }

        // Intent.
        let (interpretation, intent_leg) = self.interpret_routed(&heard, &request, state, &mut turn).await;
        self.record_route("intent", &intent_leg);
        report.route.get_or_insert_with(Map::new).insert("intent".into(), intent_leg.to_json());
        let mut interpretation = match interpretation {
            Ok(i) => i,
            Err(e) => {
                let stage = if matches!(e, NluError::Engine(_)) { "intent" } else { "validation" };
                return self.not_handled(report, stage, &e.to_string(), &heard).await;
            }
        };
        self.metrics.observe("nlu", interpretation.latency);
        let mut nlu_latency = interpretation.latency;

        // Favouring the catalog changed a word: act on that reading only where the free one
        // understood too little to say anything (see `stt::free_reading`).
        if let Some(free_text) = &transcript.free_text {
            let site = self.site();
            let planned = Self::plan(&site, &heard, &self.request_after_activation(free_text));
            let free = site.interpreter.interpret_planned(&planned).await.ok();
            nlu_latency += free.as_ref().map_or(Duration::ZERO, |f| f.latency);
            interpretation = free_reading::choose(interpretation, free);
        }

        // Something not heard: further, primed transcriptions (on the local
        // engines, only when the first reading was theirs).
        let local_client = match samples {
            Some(samples) => state.stt_client.lock().unwrap_or_else(|p| p.into_inner()).clone().map(|c| (c.1, samples)),
            None => None,
        };
        if let Some((client, samples)) = &local_client {
            let request_of = |text: &str| Some(self.request_after_activation(text));
            let first = (transcript.text.clone(), interpretation);
            let site = self.site();
            let again = hear_until_complete(
                client,
                &site.interpreter,
                samples,
                &site.stt_retry_prompts,
                &request,
                first,
                request_of,
            )
            .await;
            if again.transcripts.len() > 1 {
                self.metrics.observe("stt_retry", again.stt_latency);
                self.metrics.count("stt_retries", if again.text == transcript.text { "unused" } else { "used" });
                report.latency().stt = Some(millis(transcript.latency + again.stt_latency));
                report.latency().stt_retry = Some(millis(again.stt_latency));
                report.transcripts = Some(again.transcripts.clone());
                report.text = Some(again.text.clone());
            }
            nlu_latency += again.nlu_latency;
            interpretation = again.interpretation;
        }
        drop(turn);
        report.latency().nlu = Some(millis(nlu_latency));
        let confirm: Vec<Command> = interpretation.needs_confirmation.clone();
        let immediate: Vec<Command> =
            interpretation.commands.iter().filter(|c| !confirm.contains(c)).cloned().collect();
        report.needs_confirmation = Some(confirm.clone());
        report.no_command_reason = interpretation.no_command_reason.map(NoCommandReason::as_str);
        report.explanation = interpretation.explanation.clone();
        let audited = Report { commands: Some(json!(interpretation.commands)), ..report.clone() };
        let audit_ref = self.audit_utterance(&audited, true);
        report.audit_seq = Some(audit_ref);

        if !confirm.is_empty() {
            let id = self.request_confirmation(state, confirm, audit_ref, &heard).await;
            report.confirmation = Some(id);
        }
        self.metrics.count("utterances", if interpretation.commands.is_empty() { "no_command" } else { "commands" });
        if immediate.is_empty() {
            report.commands = Some(json!([]));
            report.latency().total = Some(millis(heard.at.elapsed()));
            self.send_report(&report).await;
            return;
        }
        let dispatch =
            Dispatch { report, commands: immediate, audit_ref, heard_at: heard.at, span: tracing::Span::current() };
        // Backpressure: waits while the MQTT stage is full.
        let _ = self.dispatch.send(dispatch).await;
    }

    /// The request to interpret, or `None` when the utterance is not for hearken.
    fn activated(&self, text: &str, state: &State) -> Option<String> {
        let now = tokio::time::Instant::now();
        let armed = state.conversation().take_armed(now);
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
    async fn interpret(&self, planned: &Planned, state: &State) -> Result<Interpretation, NluError> {
        let site = self.site();
        match site.interpreter.interpret_planned(planned).await {
            Err(NluError::Engine(e)) => {
                tracing::warn!(error = %e, "intent engine unavailable; waiting for it");
                let wait = Duration::from_millis(self.config.engines.wait_for_engine_ms);
                // The endpoint watcher in `run` cannot run while this utterance is handled: switch here.
                if let Some(endpoint) = self.intent.wait_up(wait).await {
                    self.use_intent_engine(&endpoint, state).await;
                }
                self.site().interpreter.interpret_planned(planned).await
            }
            other => other,
        }
    }

    /// Holds `commands` until confirmed; returns the confirmation's id.
    async fn request_confirmation(
        &self,
        state: &State,
        commands: Vec<Command>,
        audit_ref: Option<u64>,
        heard: &Heard,
    ) -> u64 {
        self.resolve_pending(state, None, Decision::Superseded, DecidedBy::NewRequest, Instant::now()).await;
        let id = state.conversation().next_id();
        let window = Duration::from_millis(self.config.confirmation.window_ms);
        let mut body = Map::new();
        body.insert("confirmation".into(), json!(id));
        body.insert("ref".into(), json!(audit_ref));
        body.insert("commands".into(), json!(commands));
        body.insert("window_ms".into(), json!(self.config.confirmation.window_ms));
        if let Err(e) = self.audit.append("confirmation_requested", body) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        let site = self.link.site();
        let event =
            events::confirmation_needed_event(site, id, &commands, self.config.confirmation.window_ms, audit_ref);
        let _ = self.link.publish_event(self.link.events_topic(), event.to_string().into_bytes()).await;
        let superseded = state.conversation().hold(Pending {
            id,
            commands,
            audit_ref,
            expires: tokio::time::Instant::now() + window,
            utterance: heard.id,
        });
        if let Some(other) = superseded {
            // Another utterance's request came in while this one was announced: the newer stands.
            self.conclude(other, Decision::Superseded, DecidedBy::NewRequest, Instant::now()).await;
        }
        id
    }

    /// Confirms or cancels the pending commands (if `id` matches, when given);
    /// `decided_at` is when the answer was heard (latencies count from there).
    async fn resolve_pending(
        &self,
        state: &State,
        id: Option<u64>,
        decision: Decision,
        by: DecidedBy,
        decided_at: Instant,
    ) {
        let taken = state.conversation().take(id);
        let Some(pending) = taken else {
            if id.is_some() {
                tracing::warn!(?id, "confirmation for nothing pending ignored");
            }
            return;
        };
        self.conclude(pending, decision, by, decided_at).await;
    }

    /// Audits and announces a decision on held commands; confirmed ones go to the MQTT stage.
    async fn conclude(&self, pending: Pending, decision: Decision, by: DecidedBy, decided_at: Instant) {
        let (decision, by) = (decision.as_str(), by.as_str());
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
        let site = self.link.site();
        let event = events::confirmation_event(site, pending.id, decision, by, audit_ref);
        let _ = self.link.publish_event(self.link.events_topic(), event.to_string().into_bytes()).await;
        let mut report = Report {
            confirmation: Some(pending.id),
            utterance: pending.utterance,
            decision: Some(decision),
            by: Some(by),
            ..Report::default()
        };
        if decision == Decision::Confirmed.as_str() {
            let dispatch = Dispatch {
                report,
                commands: pending.commands,
                audit_ref,
                heard_at: decided_at,
                span: tracing::info_span!("confirmation", id = pending.id),
            };
            let _ = self.dispatch.send(dispatch).await;
        } else {
            report.commands = Some(json!([]));
            self.send_report(&report).await;
        }
    }

    /// Prints the report line (and answers a text message with it).
    async fn send_report(&self, report: &Report) {
        self.announcer.announce(&self.link, report).await;
    }

    /// Appends the utterance record (before anything is published). Utterances
    /// not meant for hearken are recorded without their words.
    fn audit_utterance(&self, report: &Report, activated: bool) -> Option<u64> {
        let mut body = report.to_map();
        if !activated {
            body.remove("text");
        }
        match self.audit.append("utterance", body) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the audit log");
                None
            }
        }
    }

    /// An utterance that could not be handled: reported and audited, never silently lost.
    async fn not_handled(&self, mut report: Report, stage: &'static str, error: &str, heard: &Heard) {
        tracing::warn!(stage, error, "utterance not handled");
        report.latency().total = Some(millis(heard.at.elapsed()));
        report.error = Some(StageError { stage, message: error.to_owned() });
        report.commands = Some(json!([]));
        let seq = self.audit_utterance(&report, true);
        report.audit_seq = Some(seq);
        self.metrics.count("utterances", "not_handled");
        let site = self.link.site();
        let event = events::not_handled_event(site, heard.id, stage, error, seq);
        let _ = self.link.publish_event(self.link.events_topic(), event.to_string().into_bytes()).await;
        self.send_report(&report).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
