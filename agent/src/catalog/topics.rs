//! Every `hearken/<site>/…` topic, in one place, so that the daemon, the CLI,
//! the events and the docs cannot disagree on a name.

/// A device's base topic when the catalog names none (protocol `hearken`).
pub fn device(site: &str, id: &str) -> String {
    format!("hearken/{site}/{id}")
}

/// Outcomes, confirmations and other events.
pub fn events(site: &str) -> String {
    format!("hearken/{site}/events")
}

/// Push-to-talk: a message here arms the next utterance.
pub fn listen(site: &str) -> String {
    format!("hearken/{site}/listen")
}

/// Requests as text (from an automation, a chat bridge, a wall tablet): the
/// same limits, intent stage, confirmation, audit and events as speech.
pub fn text(site: &str) -> String {
    format!("hearken/{site}/text")
}

/// A message here makes the daemon read its catalog file again.
pub fn catalog_reload(site: &str) -> String {
    format!("hearken/{site}/catalog/reload")
}

/// Confirmations of held commands (`confirm` / `cancel`, optionally with an id).
pub fn confirm(site: &str) -> String {
    format!("hearken/{site}/confirm")
}

/// Where devices speaking the `hearken` protocol answer this client (MQTT 5 Response Topic).
pub fn responses(site: &str, client_id: &str) -> String {
    format!("hearken/{site}/responses/{client_id}")
}
