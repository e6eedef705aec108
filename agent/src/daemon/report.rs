//! The typed report of one utterance (or of one confirmation decision): the
//! JSON line `hearken run` prints and the body of the utterance's audit
//! record, one type for both so they cannot drift. Absent fields are left
//! out, as the contract has them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::Command;

/// One report line.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    /// The confirmation this line decides, or the one this utterance asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<u64>,
    /// The utterance's id (for a decision: the utterance that asked).
    pub utterance: u64,
    /// The line of the text source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// How a request that was not heard came: `mqtt` (`hearken/<site>/text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// The sender's id of a text message, echoed in its reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The speaker's room the request came with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Where the speech started in the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// Where it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
    /// Whether the VAD cut it at the length cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<bool>,
    /// Where each stage ran and why (`stt`, `intent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Map<String, Value>>,
    /// The transcript (the request, for the text source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Every reading when the utterance was heard again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcripts: Option<Vec<String>>,
    /// The reading without the catalog's vocabulary, when favouring it changed a word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_text: Option<String>,
    /// Whether the utterance was meant for hearken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<bool>,
    /// A spoken answer to a pending confirmation: `confirm` or `cancel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<&'static str>,
    /// A confirmation's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// Who decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'static str>,
    /// Commands held for a confirmation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_confirmation: Option<Vec<Command>>,
    /// Why there is no command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_command_reason: Option<&'static str>,
    /// The reason in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// The commands: as interpreted (audit record) or with their outcomes (report line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<Value>,
    /// Stage latencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// The utterance's audit record (`null` when it could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<Option<u64>>,
    /// The stage that failed, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StageError>,
}

/// Where a finished report goes: the report line, the reply to a text
/// message, Home Assistant's last transcript and outcome.
pub(crate) struct Announcer {
    /// Report lines.
    pub reports: super::Reports,
    /// Home Assistant discovery, when on.
    pub homeassistant: Option<crate::mqtt::homeassistant::HomeAssistant>,
}

impl Announcer {
    /// Sends `report` everywhere it goes.
    pub async fn announce(&self, link: &crate::mqtt::CommandLink, report: &Report) {
        report.reply(link).await;
        report.to_homeassistant(self.homeassistant.as_ref());
        let _ = self.reports.send(Value::Object(report.to_map())).await;
    }
}

/// Stage latencies in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Latency {
    /// Waiting for the worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<f64>,
    /// The trailing silence that ended the utterance (configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trailing_silence: Option<u32>,
    /// Speech to text, further readings included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stt: Option<f64>,
    /// The further readings alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stt_retry: Option<f64>,
    /// Intent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nlu: Option<f64>,
    /// Publish to the last outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<f64>,
    /// End of speech to the last acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_to_ack: Option<f64>,
    /// End of speech to the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
}

/// A stage that failed for this utterance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageError {
    /// `stt`, `limits`, `input`, `intent` or `validation`.
    pub stage: &'static str,
    /// What went wrong.
    pub message: String,
}

impl Report {
    /// The report as a JSON object (the report line, or an audit record's body).
    pub fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// The latencies, created on first use.
    pub fn latency(&mut self) -> &mut Latency {
        self.latency_ms.get_or_insert_with(Latency::default)
    }

    /// The `text_reply` event that answers a text message with this report
    /// (its final one: outcomes included); `None` for speech and text lines.
    pub fn text_reply(&self, site: &str) -> Option<Value> {
        self.via?;
        let mut event = Map::new();
        event.insert("type".into(), "text_reply".into());
        event.insert("site".into(), site.into());
        event.insert("ts".into(), crate::now_rfc3339().into());
        let fields = self.to_map();
        for key in [
            "utterance",
            "request_id",
            "text",
            "commands",
            "needs_confirmation",
            "confirmation",
            "no_command_reason",
            "explanation",
            "audit_seq",
        ] {
            if let Some(value) = fields.get(key) {
                event.insert(key.into(), value.clone());
            }
        }
        if let Some(error) = &self.error {
            event.insert("stage".into(), error.stage.into());
            event.insert("error".into(), error.message.clone().into());
        }
        Some(Value::Object(event))
    }

    /// What this report says in a line for Home Assistant's "last outcome":
    /// the commands and their outcomes, what waits for confirmation, or why
    /// nothing was done; `None` for a report that has no outcome yet.
    pub fn outcome_summary(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(format!("not handled ({}): {}", error.stage, error.message));
        }
        let commands = self.commands.as_ref()?.as_array()?;
        let said = |c: &Value| {
            let value = c["value"].as_i64().map(|v| format!(" {v}")).unwrap_or_default();
            format!("{} {}{value}", c["device"].as_str().unwrap_or("?"), c["action"].as_str().unwrap_or("?"))
        };
        if !commands.is_empty() {
            let done: Vec<String> =
                commands.iter().map(|c| format!("{}: {}", said(c), c["outcome"].as_str().unwrap_or("sent"))).collect();
            return Some(done.join("; "));
        }
        if let Some(held) = self.needs_confirmation.as_ref().filter(|h| !h.is_empty()) {
            let held: Vec<String> = held.iter().map(|c| format!("{} {}", c.device, c.action)).collect();
            return Some(format!("waiting for confirmation: {}", held.join(", ")));
        }
        if let Some(decision) = self.decision {
            return Some(format!("confirmation {decision}"));
        }
        Some(match (self.no_command_reason, &self.explanation) {
            (Some(reason), Some(why)) => format!("no command ({reason}): {why}"),
            (Some(reason), None) => format!("no command ({reason})"),
            _ => "no command".to_owned(),
        })
    }

    /// Publishes the last transcript and outcome to Home Assistant, when discovery is on.
    pub fn to_homeassistant(&self, homeassistant: Option<&crate::mqtt::homeassistant::HomeAssistant>) {
        use crate::mqtt::homeassistant::Entity;
        let Some(ha) = homeassistant else { return };
        // Home Assistant keeps at most 255 characters of a state.
        let short = |s: &str| s.chars().take(255).collect::<String>();
        if let Some(text) = &self.text {
            ha.state(Entity::LastTranscript, short(text));
        }
        if let Some(summary) = self.outcome_summary() {
            ha.state(Entity::LastOutcome, short(&summary));
        }
    }

    /// Publishes the reply to a text message on the events topic (nothing
    /// for other inputs).
    pub async fn reply(&self, link: &crate::mqtt::CommandLink) {
        if let Some(event) = self.text_reply(link.site()) {
            let _ = link.publish_event(link.events_topic(), event.to_string().into_bytes()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn absent_fields_are_left_out_and_a_missing_audit_seq_is_null() {
        let mut report = Report { utterance: 3, text: Some("turn on the lamp".into()), ..Report::default() };
        report.latency().queue = Some(1.5);
        report.audit_seq = Some(None);
        let line = serde_json::to_value(&report).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"utterance": 3, "text": "turn on the lamp", "latency_ms": {"queue": 1.5}, "audit_seq": null})
        );
    }
}
