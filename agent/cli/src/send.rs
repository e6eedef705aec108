//! `hearken send`: one command, validated, published, acknowledged, audited.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Map, Value};

use hearken::audit::{AuditLog, AuditOptions};
use hearken::catalog::Command;
use hearken::millis;
use hearken::mqtt::{events, CommandLink, Delivery, Outcome};

use crate::common::{load_catalog, BrokerArgs, EXIT_INVALID, EXIT_NOT_ACKNOWLEDGED};

#[derive(Args)]
/// `hearken send` flags.
pub(crate) struct SendArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Device catalog (TOML).
    #[arg(long)]
    catalog: PathBuf,
    /// Append the command and its outcome to this audit log.
    #[arg(long)]
    audit: Option<PathBuf>,
    /// After a timeout, keep listening this long for a late acknowledgement
    /// (recorded as late; the outcome does not change).
    #[arg(long, default_value_t = 1000)]
    late_grace_ms: u64,
    /// How long to wait for the broker connection.
    #[arg(long, default_value_t = 3000)]
    connect_timeout_ms: u64,
    /// Device id.
    device: String,
    /// Action.
    action: String,
    /// Integer value, for actions that take one.
    value: Option<String>,
}

fn parse_value(raw: Option<&str>) -> anyhow::Result<Option<i64>> {
    raw.map(|v| v.trim().parse::<i64>().with_context(|| format!("value '{v}' is not an integer"))).transpose()
}

fn command_fields(command: &Command) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("device".into(), json!(command.device));
    body.insert("action".into(), json!(command.action));
    body.insert("value".into(), json!(command.value));
    body
}

/// Sends the command and prints its outcome line.
pub(crate) async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let catalog = match load_catalog(&args.catalog) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let value = match parse_value(args.value.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("refused, nothing published: {e:#}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let command = Command { device: args.device, action: args.action, value };
    let device = match catalog.check(&command) {
        Ok(device) => device.clone(),
        Err(e) => {
            eprintln!("refused, nothing published: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let broker = args.broker.options()?;
    let audit_log = args.audit.as_deref().map(|p| AuditLog::open(p, AuditOptions::default())).transpose()?;
    let audit_seq = match &audit_log {
        Some(log) => {
            let mut body = command_fields(&command);
            body.insert("source".into(), json!("cli"));
            body.insert("protocol".into(), json!(device.protocol.name()));
            body.insert("topic".into(), json!(device.topic));
            body.insert("budget_ms".into(), json!(device.budget_ms));
            Some(log.append("command", body)?)
        }
        None => None,
    };

    let link = CommandLink::start(&broker, catalog.clone())?;
    // Subscribed before sending, so a late acknowledgement cannot slip past.
    let mut late_rx = link.late_acks();
    let delivery = match link.wait_connected(Duration::from_millis(args.connect_timeout_ms)).await {
        Ok(()) => link.send(&command).await?,
        Err(e) => {
            eprintln!("{e}");
            Delivery::not_sent(e.to_string(), Duration::ZERO)
        }
    };
    if let (Some(log), Some(seq)) = (&audit_log, audit_seq) {
        // The same record the daemon writes: the outcome line plus its command's seq.
        let mut body = events::outcome_line(&command, &delivery).as_object().cloned().unwrap_or_default();
        body.insert("ref".into(), json!(seq));
        log.append("outcome", body)?;
    }
    let events_topic = catalog.events_topic();
    let event = events::outcome_event(&catalog.site, &command, &delivery, audit_seq);
    let _ = link.publish_event(events_topic.clone(), event.to_string().into_bytes()).await;

    let mut output = events::outcome_line(&command, &delivery);
    if matches!(delivery.outcome, Outcome::Timeout | Outcome::Accepted) && args.late_grace_ms > 0 {
        let grace = Duration::from_millis(args.late_grace_ms);
        let late = tokio::time::timeout(grace, async {
            loop {
                match late_rx.recv().await {
                    Ok(late) if late.command_id == delivery.command_id => return Some(late),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(late) = late {
            output["late_ack_ms"] = json!(millis(late.latency));
            if let (Some(log), Some(seq)) = (&audit_log, audit_seq) {
                let mut body = command_fields(&command);
                body.insert("ref".into(), json!(seq));
                body.insert("latency_ms".into(), json!(millis(late.latency)));
                log.append("late_ack", body)?;
            }
            let event = events::late_ack_event(&catalog.site, &command, &late, audit_seq);
            let _ = link.publish_event(events_topic, event.to_string().into_bytes()).await;
        }
    }
    link.shutdown().await;
    if let Some(log) = &audit_log {
        log.sync()?;
    }
    println!("{output}");
    Ok(if delivery.outcome == Outcome::Acknowledged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_ACKNOWLEDGED)
    })
}
