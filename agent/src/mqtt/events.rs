//! Events published on `hearken/<site>/events` so dashboards and Home
//! Assistant can follow what hearken does (see `schemas/event.schema.json`).

use serde_json::{json, Value};

use crate::catalog::command::Command;
use crate::mqtt::{Delivery, LateAck};

/// The outcome of one command as the CLI and the daemon print it (and audit
/// it): device, action, value, outcome, latency, state, whether the broker
/// took it, and the reason when there is one.
pub fn outcome_line(command: &Command, delivery: &Delivery) -> Value {
    let mut line = json!({
        "device": command.device,
        "action": command.action,
        "value": command.value,
        "outcome": delivery.outcome.as_str(),
        "latency_ms": crate::millis(delivery.latency),
        "state": delivery.state,
        "broker_accepted": delivery.broker_accepted,
    });
    if let Some(reason) = &delivery.reason {
        line["reason"] = json!(reason);
    }
    line
}

/// The outcome of one command, as published on the events topic.
pub fn outcome_event(site: &str, command: &Command, delivery: &Delivery, audit_seq: Option<u64>) -> Value {
    let mut event = json!({"type": "command_outcome", "site": site, "ts": crate::now_rfc3339()});
    if let (Some(event), Value::Object(line)) = (event.as_object_mut(), outcome_line(command, delivery)) {
        event.extend(line);
    }
    // Events always carry the reason, null when there is none.
    event["reason"] = json!(delivery.reason);
    event["audit_seq"] = json!(audit_seq);
    event
}

/// An acknowledgement that came after its command's budget: the outcome
/// stays as reported, this only tells that the device did act, later.
pub fn late_ack_event(site: &str, command: &Command, late: &LateAck, audit_seq: Option<u64>) -> Value {
    json!({
        "type": "late_ack",
        "site": site,
        "ts": crate::now_rfc3339(),
        "device": command.device,
        "action": command.action,
        "value": command.value,
        "latency_ms": crate::millis(late.latency),
        "audit_seq": audit_seq,
    })
}

/// Commands that wait for a confirmation: how to confirm, and until when.
pub fn confirmation_needed_event(
    site: &str,
    id: u64,
    commands: &[Command],
    window_ms: u64,
    audit_seq: Option<u64>,
) -> Value {
    json!({
        "type": "confirmation_needed",
        "site": site,
        "ts": crate::now_rfc3339(),
        "confirmation": id,
        "commands": commands,
        "expires_in_ms": window_ms,
        "confirm_topic": crate::catalog::topics::confirm(site),
        "audit_seq": audit_seq,
    })
}

/// What became of a confirmation (`confirmed`, `cancelled`, `expired`,
/// `superseded`) and who decided (`voice`, `mqtt`, `timeout`, …).
pub fn confirmation_event(site: &str, id: u64, decision: &str, by: &str, audit_seq: Option<u64>) -> Value {
    json!({
        "type": "confirmation",
        "site": site,
        "ts": crate::now_rfc3339(),
        "confirmation": id,
        "decision": decision,
        "by": by,
        "audit_seq": audit_seq,
    })
}

/// An utterance the daemon could not handle (an engine down, a refused
/// model reply): reported, never silently lost.
pub fn not_handled_event(site: &str, utterance: u64, stage: &str, error: &str, audit_seq: Option<u64>) -> Value {
    json!({
        "type": "utterance_not_handled",
        "site": site,
        "ts": crate::now_rfc3339(),
        "utterance": utterance,
        "stage": stage,
        "error": error,
        "audit_seq": audit_seq,
    })
}
