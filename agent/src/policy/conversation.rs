//! What one utterance leaves for the next: an armed activation (push-to-talk,
//! or the wake phrase said alone) and commands held for a confirmation. A
//! pure state machine over instants — no engines, no MQTT, no clock of its
//! own — so every transition is unit-tested; the worker performs what a
//! transition returns (audit records, events, dispatch).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::catalog::Command;

/// What became of held commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Confirmed: the commands go out.
    Confirmed,
    /// Cancelled by the speaker, an MQTT message or shutdown.
    Cancelled,
    /// Nobody answered within the window.
    Expired,
    /// A newer request that needs confirmation took its place.
    Superseded,
}

impl Decision {
    /// The name in audit records, events, reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Confirmed => "confirmed",
            Decision::Cancelled => "cancelled",
            Decision::Expired => "expired",
            Decision::Superseded => "superseded",
        }
    }
}

/// Who or what decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// A spoken answer.
    Voice,
    /// A message on the confirm topic.
    Mqtt,
    /// The window ran out.
    Timeout,
    /// A newer request.
    NewRequest,
    /// The daemon stopping.
    Shutdown,
    /// A catalog reload took away a device the commands were for.
    CatalogReload,
}

impl DecidedBy {
    /// The name in audit records, events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Voice => "voice",
            DecidedBy::Mqtt => "mqtt",
            DecidedBy::Timeout => "timeout",
            DecidedBy::NewRequest => "new_request",
            DecidedBy::Shutdown => "shutdown",
            DecidedBy::CatalogReload => "catalog_reload",
        }
    }
}

/// Commands waiting for a confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The confirmation's id (in events and on the confirm topic).
    pub id: u64,
    /// What goes out when confirmed.
    pub commands: Vec<Command>,
    /// The utterance's audit record.
    pub audit_ref: Option<u64>,
    /// When the window closes.
    pub expires: Instant,
    /// The utterance that asked.
    pub utterance: u64,
}

/// The activation and confirmation state shared by the utterances of one daemon.
#[derive(Debug)]
pub struct Conversation {
    armed_until: Option<Instant>,
    pending: Option<Pending>,
    next_id: u64,
}

impl Default for Conversation {
    fn default() -> Self {
        Conversation { armed_until: None, pending: None, next_id: 1 }
    }
}

impl Conversation {
    /// Arms activation: the next utterance until `now + window` is a request.
    pub fn arm(&mut self, now: Instant, window: Duration) {
        self.armed_until = Some(now + window);
    }

    /// Whether the activation was armed and still is at `now`; disarms either way
    /// (one utterance uses it).
    pub fn take_armed(&mut self, now: Instant) -> bool {
        self.armed_until.take().is_some_and(|until| now <= until)
    }

    /// Whether commands wait for a confirmation.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// When the pending confirmation expires, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.expires)
    }

    /// A fresh confirmation id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Holds `pending`; returns what it replaces (superseded), if anything.
    pub fn hold(&mut self, pending: Pending) -> Option<Pending> {
        self.pending.replace(pending)
    }

    /// Takes the pending commands for a decision: any when `id` is `None`,
    /// else only when the ids match (an answer for another confirmation takes nothing).
    pub fn take(&mut self, id: Option<u64>) -> Option<Pending> {
        self.pending.take_if(|p| id.is_none_or(|id| id == p.id))
    }

    /// Takes the pending commands if one of them is for a device `exists` denies.
    pub fn take_orphaned(&mut self, exists: impl Fn(&str) -> bool) -> Option<Pending> {
        self.pending.take_if(|p| p.commands.iter().any(|c| !exists(&c.device)))
    }

    /// Takes the pending commands if their window has closed at `now`.
    pub fn take_expired(&mut self, now: Instant) -> Option<Pending> {
        self.pending.take_if(|p| p.expires <= now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pending(conversation: &mut Conversation, now: Instant, utterance: u64) -> Pending {
        let id = conversation.next_id();
        let command = Command { device: "front_door_lock".into(), action: "unlock".into(), value: None };
        Pending {
            id,
            commands: vec![command],
            audit_ref: Some(utterance * 10),
            expires: now + Duration::from_secs(8),
            utterance,
        }
    }

    #[test]
    fn an_armed_activation_serves_one_utterance_within_its_window() {
        let now = Instant::now();
        let mut conversation = Conversation::default();
        assert!(!conversation.take_armed(now), "nothing armed");
        conversation.arm(now, Duration::from_secs(5));
        assert!(conversation.take_armed(now + Duration::from_secs(5)), "the window's last instant counts");
        assert!(!conversation.take_armed(now + Duration::from_secs(1)), "used once");
        conversation.arm(now, Duration::from_secs(5));
        assert!(!conversation.take_armed(now + Duration::from_secs(6)), "expired");
        assert!(!conversation.take_armed(now), "an expired arming is gone too");
    }

    #[test]
    fn an_answer_takes_the_pending_commands_once_and_only_for_its_id() {
        let now = Instant::now();
        let mut conversation = Conversation::default();
        let first = pending(&mut conversation, now, 1);
        assert_eq!(first.id, 1);
        assert!(conversation.hold(first.clone()).is_none());
        assert!(conversation.is_pending());
        assert_eq!(conversation.deadline(), Some(now + Duration::from_secs(8)));
        assert!(conversation.take(Some(2)).is_none(), "an answer for another id takes nothing");
        assert!(conversation.is_pending());
        assert_eq!(conversation.take(Some(1)), Some(first));
        assert!(conversation.take(None).is_none(), "taken once");
        assert_eq!(conversation.deadline(), None);
    }

    #[test]
    fn a_newer_request_supersedes_the_held_one_and_ids_keep_counting() {
        let now = Instant::now();
        let mut conversation = Conversation::default();
        let first = pending(&mut conversation, now, 1);
        conversation.hold(first.clone());
        let second = pending(&mut conversation, now, 2);
        assert_eq!(second.id, 2);
        assert_eq!(conversation.hold(second.clone()), Some(first), "the older one is handed back to be concluded");
        assert_eq!(conversation.take(None), Some(second));
    }

    #[test]
    fn the_window_closes_at_its_deadline_not_before() {
        let now = Instant::now();
        let mut conversation = Conversation::default();
        let held = pending(&mut conversation, now, 1);
        conversation.hold(held.clone());
        assert!(conversation.take_expired(now + Duration::from_millis(7_999)).is_none());
        assert_eq!(conversation.take_expired(now + Duration::from_secs(8)), Some(held));
        assert!(!conversation.is_pending());
    }

    #[test]
    fn decisions_keep_their_contract_names() {
        let names: Vec<&str> = [Decision::Confirmed, Decision::Cancelled, Decision::Expired, Decision::Superseded]
            .iter()
            .map(|d| d.as_str())
            .collect();
        assert_eq!(names, ["confirmed", "cancelled", "expired", "superseded"]);
        for by in [DecidedBy::Voice, DecidedBy::Mqtt, DecidedBy::Timeout, DecidedBy::NewRequest, DecidedBy::Shutdown] {
            assert_eq!(serde_json::to_value(by).unwrap(), by.as_str());
        }
        assert_eq!(serde_json::to_value(Decision::Superseded).unwrap(), "superseded");
    }
}
