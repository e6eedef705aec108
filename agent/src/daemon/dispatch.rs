//! The MQTT stage of the daemon: publishes an utterance's commands (all at
//! once), waits for their outcomes, completes the audit record, publishes
//! the events and emits the utterance's report line. Fed by a bounded
//! channel: when commands pile up, the interpreter waits (backpressure).
//! An acknowledgement that arrives after its command's budget gets its own
//! `late_ack` audit record and event; the outcome never changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::metrics::Metrics;
use super::report::{Announcer, Report};
use crate::audit::AuditLog;
use crate::catalog::command::Command;
use crate::millis;
use crate::mqtt::events;
use crate::mqtt::{CommandLink, Delivery, LateAck, Outcome};
use crate::policy::rate_limit::RateLimits;

/// Commands ready to go out, with what the report and audit need.
pub struct Dispatch {
    /// The report line so far (utterance fields, stage latencies).
    pub report: Report,
    /// Commands to publish.
    pub commands: Vec<Command>,
    /// The audit record these outcomes complete.
    pub audit_ref: Option<u64>,
    /// End of speech plus trailing silence (when the VAD emitted the utterance).
    pub heard_at: Instant,
    /// The utterance's tracing span.
    pub span: tracing::Span,
}

/// Runs the MQTT stage until the channel closes. Every command passes the
/// rate limits here, the one place all commands (confirmed ones too) go through.
pub async fn run(
    mut work: mpsc::Receiver<Dispatch>,
    link: CommandLink,
    mut limits: RateLimits,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    announcer: Announcer,
) {
    // Subscribed before the first command goes out, so no late acknowledgement slips past.
    let mut late_acks = link.late_acks();
    let mut unanswered = Unanswered::default();
    loop {
        tokio::select! {
            dispatch = work.recv() => {
                let Some(dispatch) = dispatch else { break };
                let span = dispatch.span.clone();
                dispatch_one(dispatch, &link, &mut limits, &audit, &metrics, &announcer, &mut unanswered)
                    .instrument(span)
                    .await;
            }
            late = late_acks.recv() => match late {
                Ok(late) => record_late_ack(&late, &mut unanswered, &link, &audit, &metrics).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "late acknowledgements not recorded (too many at once)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    // Late acknowledgements that arrived while the last commands were resolved.
    while let Ok(late) = late_acks.try_recv() {
        record_late_ack(&late, &mut unanswered, &link, &audit, &metrics).await;
    }
}

/// How many commands that timed out (or were only accepted by the broker) are
/// remembered for a late acknowledgement; the link remembers as many.
const UNANSWERED_KEPT: usize = 1024;

/// Commands whose device had not answered when their outcome was decided, by
/// the link's command id: what a late acknowledgement is recorded against.
#[derive(Default)]
struct Unanswered {
    commands: HashMap<u64, (Command, Option<u64>)>,
    order: VecDeque<u64>,
}

impl Unanswered {
    fn remember(&mut self, command_id: u64, command: Command, audit_ref: Option<u64>) {
        if self.order.len() == UNANSWERED_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.commands.remove(&oldest);
            }
        }
        self.order.push_back(command_id);
        self.commands.insert(command_id, (command, audit_ref));
    }

    fn take(&mut self, command_id: u64) -> Option<(Command, Option<u64>)> {
        let taken = self.commands.remove(&command_id)?;
        self.order.retain(|id| *id != command_id);
        Some(taken)
    }
}

/// The `late_ack` audit record (the same as `hearken send` writes) and event.
async fn record_late_ack(
    late: &LateAck,
    unanswered: &mut Unanswered,
    link: &CommandLink,
    audit: &AuditLog,
    metrics: &Metrics,
) {
    let Some((command, audit_ref)) = unanswered.take(late.command_id) else { return };
    metrics.count("late_acks", &command.device);
    let mut body = Map::new();
    body.insert("device".into(), json!(command.device));
    body.insert("action".into(), json!(command.action));
    body.insert("value".into(), json!(command.value));
    body.insert("ref".into(), json!(audit_ref));
    body.insert("latency_ms".into(), json!(millis(late.latency)));
    if let Err(e) = audit.append("late_ack", body) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    let event = events::late_ack_event(link.site(), &command, late, audit_ref);
    let _ = link.publish_event(link.events_topic(), event.to_string().into_bytes()).await;
}

async fn dispatch_one(
    dispatch: Dispatch,
    link: &CommandLink,
    limits: &mut RateLimits,
    audit: &AuditLog,
    metrics: &Metrics,
    announcer: &Announcer,
    unanswered: &mut Unanswered,
) {
    let Dispatch { mut report, commands, audit_ref, heard_at, .. } = dispatch;
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for (i, command) in commands.iter().cloned().enumerate() {
        let link = link.clone();
        let confirm_class =
            link.catalog().device(&command.device).is_some_and(|d| d.needs_confirmation(&command.action));
        let admitted = limits.admit(&command.device, confirm_class, Instant::now());
        sends.spawn(async move {
            if let Err(limit) = admitted {
                return (i, Delivery::not_sent(limit, Duration::ZERO), Instant::now());
            }
            let delivery = link
                .send(&command)
                .await
                .unwrap_or_else(|e| Delivery::not_sent(format!("refused: {e}"), Duration::ZERO));
            (i, delivery, Instant::now())
        });
    }
    let mut deliveries: Vec<Option<(Delivery, Instant)>> = vec![None; commands.len()];
    while let Some(joined) = sends.join_next().await {
        if let Ok((i, delivery, at)) = joined {
            deliveries[i] = Some((delivery, at));
        }
    }
    let mqtt = started.elapsed();
    let mut outcomes = Vec::new();
    let mut last_ack: Option<Instant> = None;
    let events_topic = link.events_topic();
    for (command, delivered) in commands.iter().zip(deliveries) {
        let (delivery, at) =
            delivered.unwrap_or_else(|| (Delivery::not_sent("the send task failed", Duration::ZERO), Instant::now()));
        if delivery.outcome == Outcome::Acknowledged {
            last_ack = Some(last_ack.map_or(at, |l| l.max(at)));
        }
        if matches!(delivery.outcome, Outcome::Timeout | Outcome::Accepted) {
            unanswered.remember(delivery.command_id, command.clone(), audit_ref);
        }
        metrics.count("commands", delivery.outcome.as_str());
        let outcome = events::outcome_line(command, &delivery);
        let mut body = outcome.as_object().cloned().unwrap_or_default();
        body.insert("ref".into(), json!(audit_ref));
        if let Err(e) = audit.append("outcome", body) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        let event = events::outcome_event(link.site(), command, &delivery, audit_ref);
        let _ = link.publish_event(events_topic.clone(), event.to_string().into_bytes()).await;
        outcomes.push(outcome);
    }
    metrics.observe("mqtt", mqtt);
    let latency = report.latency();
    latency.mqtt = Some(millis(mqtt));
    if let Some(ack) = last_ack {
        let end_to_ack = ack.saturating_duration_since(heard_at);
        latency.end_to_ack = Some(millis(end_to_ack));
        metrics.observe("end_to_ack", end_to_ack);
    }
    latency.total = Some(millis(heard_at.elapsed()));
    let mut done = Map::new();
    done.insert("ref".into(), json!(audit_ref));
    done.insert("latency_ms".into(), json!(latency));
    if let Err(e) = audit.append("utterance_done", done) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    report.commands = Some(Value::Array(outcomes));
    tracing::info!(mqtt_ms = millis(mqtt), "commands resolved");
    announcer.announce(link, &report).await;
}
