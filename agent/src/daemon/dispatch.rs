//! The MQTT stage of the daemon: publishes an utterance's commands (all at
//! once), waits for their outcomes, completes the audit record, publishes
//! the events and emits the utterance's report line. Fed by a bounded
//! channel: when commands pile up, the interpreter waits (backpressure).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::metrics::Metrics;
use super::Reports;
use crate::audit::AuditLog;
use crate::catalog::command::Command;
use crate::mqtt::{CommandLink, Delivery, Outcome};
use crate::policy::rate_limit::RateLimits;
use crate::millis;
use crate::mqtt::events;

/// Commands ready to go out, with what the report and audit need.
pub struct Dispatch {
    /// The report line so far (utterance fields, stage latencies).
    pub report: Map<String, Value>,
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
    reports: Reports,
) {
    while let Some(dispatch) = work.recv().await {
        let span = dispatch.span.clone();
        dispatch_one(dispatch, &link, &mut limits, &audit, &metrics, &reports).instrument(span).await;
    }
}

async fn dispatch_one(
    dispatch: Dispatch,
    link: &CommandLink,
    limits: &mut RateLimits,
    audit: &AuditLog,
    metrics: &Metrics,
    reports: &Reports,
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
    let events_topic = link.catalog().events_topic();
    for (command, delivered) in commands.iter().zip(deliveries) {
        let (delivery, at) =
            delivered.unwrap_or_else(|| (Delivery::not_sent("the send task failed", Duration::ZERO), Instant::now()));
        if delivery.outcome == Outcome::Acknowledged {
            last_ack = Some(last_ack.map_or(at, |l| l.max(at)));
        }
        metrics.count("commands", delivery.outcome.as_str());
        let outcome = events::outcome_line(command, &delivery);
        let mut body = outcome.as_object().cloned().unwrap_or_default();
        body.insert("ref".into(), json!(audit_ref));
        if let Err(e) = audit.append("outcome", body) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
        let event = events::outcome_event(&link.catalog().site, command, &delivery, audit_ref);
        let _ = link.publish_event(events_topic.clone(), event.to_string().into_bytes()).await;
        outcomes.push(outcome);
    }
    metrics.observe("mqtt", mqtt);
    let latency = report.entry("latency_ms").or_insert_with(|| json!({}));
    latency["mqtt"] = json!(millis(mqtt));
    if let Some(ack) = last_ack {
        let end_to_ack = ack.saturating_duration_since(heard_at);
        latency["end_to_ack"] = json!(millis(end_to_ack));
        metrics.observe("end_to_ack", end_to_ack);
    }
    latency["total"] = json!(millis(heard_at.elapsed()));
    let mut done = Map::new();
    done.insert("ref".into(), json!(audit_ref));
    done.insert("latency_ms".into(), latency.clone());
    if let Err(e) = audit.append("utterance_done", done) {
        tracing::error!(error = %e, "cannot write the audit log");
    }
    report.insert("commands".into(), Value::Array(outcomes));
    tracing::info!(mqtt_ms = millis(mqtt), "commands resolved");
    let _ = reports.send(Value::Object(report)).await;
}
