//! Events published on `hearken/<site>/events` so dashboards and Home
//! Assistant can follow what hearken does (see `schemas/event.schema.json`).

use serde_json::{json, Value};

use crate::command::Command;
use crate::mqtt::{Delivery, LateAck};

/// The outcome of one command, as published on the events topic.
pub fn outcome_event(site: &str, command: &Command, delivery: &Delivery, audit_seq: Option<u64>) -> Value {
    json!({
        "type": "command_outcome",
        "site": site,
        "ts": crate::now_rfc3339(),
        "device": command.device,
        "action": command.action,
        "value": command.value,
        "outcome": delivery.outcome.as_str(),
        "latency_ms": crate::millis(delivery.latency),
        "state": delivery.state,
        "reason": delivery.reason,
        "broker_accepted": delivery.broker_accepted,
        "audit_seq": audit_seq,
    })
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
