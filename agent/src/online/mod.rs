//! The online fallback: OpenAI-compatible speech and intent APIs that take
//! an utterance's stage when the box has no idle capacity or a local engine
//! is down, within the site's privacy policy (`docs/online.md`).
//!
//! # Layout
//!
//! - [`router`]: decides, per utterance and stage, local or online, and why.
//! - [`breaker`]: one circuit breaker per endpoint.
//! - this module: the endpoints (primary and backup, API keys), the retry
//!   ladder (an immediate retry, then backoff with jitter inside the deadline,
//!   then the backup), and what every attempt did, for the audit record.
//!
//! Whatever an online model answers is validated against the catalog exactly
//! like the local engine's answer ([`crate::intent::Interpreter::interpret_planned_via`]).

pub mod breaker;
pub mod router;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::config::{ConfigError, OnlineConfig, OnlineEndpointConfig, Privacy, RetryConfig};
use crate::intent::{ChatClient, ChatError, ChatParams};
use crate::intent::{Interpretation, Interpreter, NluError, Planned};
use crate::stt::{SttClient, SttError, SttResult};
use breaker::Breaker;
use router::Reason;

/// Errors of the online stage.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The utterance's deadline passed: nothing more is sent, in-flight requests are abandoned.
    #[error("online {stage}: deadline passed after {attempts} request(s)")]
    DeadlinePassed {
        /// `stt` or `intent`.
        stage: &'static str,
        /// Requests sent.
        attempts: usize,
    },
    /// Every endpoint failed or was skipped by its breaker.
    #[error("online {stage}: no endpoint answered (last: {last})")]
    Exhausted {
        /// `stt` or `intent`.
        stage: &'static str,
        /// The last failure.
        last: String,
    },
    /// The online settings are unusable (an API key file, a device id).
    #[error("{0}")]
    Config(String),
}

impl From<ConfigError> for OnlineError {
    fn from(e: ConfigError) -> Self {
        OnlineError::Config(e.to_string())
    }
}

/// What one try of one endpoint did: the audit record lists them all.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// `primary` or `backup`.
    pub endpoint: &'static str,
    /// Whether a request went out (not when a breaker was open or the deadline had passed).
    pub sent: bool,
    /// `ok`, `timeout`, `unreachable`, `status_429`, `status_5xx`-style codes,
    /// `unauthorized`, `malformed`, `off_schema`, `breaker_open`, `deadline`.
    pub outcome: String,
    /// Request → answer (or abandonment).
    pub ms: f64,
}

/// A failed request, and whether trying the same endpoint again can help.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Short code for the audit record (see [`Attempt::outcome`]).
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Timeouts, connection errors, 429 and 5xx: worth another try. Wrong key,
    /// malformed or off-schema answers: go to the backup instead.
    pub transient: bool,
}

impl Failure {
    fn new(kind: impl Into<String>, message: impl Into<String>, transient: bool) -> Failure {
        Failure { kind: kind.into(), message: message.into(), transient }
    }

    fn from_status(status: u16, message: String) -> Failure {
        match status {
            401 | 403 => Failure::new("unauthorized", message, false),
            429 => Failure::new("status_429", message, true),
            500..=599 => Failure::new(format!("status_{status}"), message, true),
            _ => Failure::new(format!("status_{status}"), message, false),
        }
    }

    fn unreachable(reason: &str) -> Failure {
        let kind = if reason.contains("timed out") { "timeout" } else { "unreachable" };
        Failure::new(kind, reason, true)
    }

    /// How a speech API's error counts.
    pub fn of_stt(e: &SttError) -> Failure {
        match e {
            SttError::Unreachable { reason, .. } => Failure::unreachable(reason),
            SttError::Status { status, .. } => Failure::from_status(*status, e.to_string()),
            SttError::BadAnswer { .. } => Failure::new("malformed", e.to_string(), false),
            SttError::OffSchema { .. } => Failure::new("off_schema", e.to_string(), false),
            SttError::Spawn(_) => Failure::new("unreachable", e.to_string(), false),
        }
    }

    /// How an intent API's error (or its refused answer) counts.
    pub fn of_intent(e: &NluError) -> Failure {
        match e {
            NluError::Engine(ChatError::Unreachable { reason, .. }) => Failure::unreachable(reason),
            NluError::Engine(ChatError::Status { status, .. }) => Failure::from_status(*status, e.to_string()),
            NluError::Engine(ChatError::BadAnswer { .. } | ChatError::Spawn(_)) | NluError::Malformed { .. } => {
                Failure::new("malformed", e.to_string(), false)
            }
            NluError::NotAsked { .. } | NluError::Invalid { .. } | NluError::TooManyCommands { .. } => {
                Failure::new("off_schema", e.to_string(), false)
            }
        }
    }
}

/// A result and the attempts that produced it.
#[derive(Debug)]
pub struct Served<T> {
    /// The answer, or why there is none.
    pub result: Result<T, OnlineError>,
    /// Every try, in order.
    pub attempts: Vec<Attempt>,
}

impl Attempt {
    /// A try that sent nothing (`deadline`, `breaker_open`).
    fn skipped(endpoint: &'static str, outcome: &str) -> Attempt {
        Attempt { endpoint, sent: false, outcome: outcome.to_owned(), ms: 0.0 }
    }
}

impl<T> Served<T> {
    /// The deadline passed: what was sent so far, and nothing more.
    fn deadline_passed(stage: &'static str, attempts: Vec<Attempt>) -> Served<T> {
        let sent = attempts.iter().filter(|a| a.sent).count();
        Served { result: Err(OnlineError::DeadlinePassed { stage, attempts: sent }), attempts }
    }

    /// Nothing tried: the stage has no endpoint.
    fn unconfigured(stage: &'static str) -> Served<T> {
        Served {
            result: Err(OnlineError::Exhausted { stage, last: "no endpoint configured".into() }),
            attempts: Vec::new(),
        }
    }
}

/// One endpoint with its breaker.
struct Endpoint<C> {
    role: &'static str,
    client: C,
    breaker: Breaker,
}

/// The endpoints of one stage, tried in order with the retry ladder.
pub struct Chain<C> {
    stage: &'static str,
    endpoints: Vec<Endpoint<C>>,
    retry: RetryConfig,
}

/// The ceiling of the `retry`-th backoff (0-based): base × 2^retry, capped.
pub fn backoff_ceiling(retry: &RetryConfig, index: u32) -> Duration {
    let factor = 1u64.checked_shl(index.min(20)).unwrap_or(u64::MAX);
    Duration::from_millis(retry.backoff_base_ms.saturating_mul(factor).min(retry.backoff_max_ms))
}

impl<C> Chain<C> {
    /// The chain of `online.<stage>`: its primary and its backup, if any, each
    /// with its API key read and its client made by `client`.
    fn build(
        stage: &'static str,
        primary: &OnlineEndpointConfig,
        retry: &RetryConfig,
        client: impl Fn(&OnlineEndpointConfig, Option<String>) -> Result<C, OnlineError>,
    ) -> Result<Chain<C>, OnlineError> {
        let field = format!("online.{stage}");
        let mut endpoints = Vec::new();
        let backup = primary.backup.as_deref().map(|b| ("backup", b, format!("{field}.backup")));
        for (role, endpoint, field) in std::iter::once(("primary", primary, field.clone())).chain(backup) {
            let key = endpoint.api_key(&field)?;
            let breaker = Breaker::new(retry.breaker_failures, Duration::from_millis(retry.breaker_open_ms));
            endpoints.push(Endpoint { role, client: client(endpoint, key)?, breaker });
        }
        Ok(Chain { stage, endpoints, retry: retry.clone() })
    }
}

impl<C: Clone> Chain<C> {
    /// Whether some endpoint's breaker would let a request through now.
    pub fn available(&self) -> bool {
        let now = std::time::Instant::now();
        self.endpoints.iter().any(|e| e.breaker.would_allow(now))
    }

    /// How long to wait before try number `tries + 1` of an endpoint after a
    /// transient failure, or `None` when the ladder for it is used up.
    fn next_wait(&self, tries: u32) -> Option<Duration> {
        let immediate = u32::from(self.retry.immediate);
        if tries <= immediate {
            return Some(Duration::ZERO);
        }
        let index = tries - 1 - immediate;
        if index >= self.retry.backoff_retries {
            return None;
        }
        let ceiling = backoff_ceiling(&self.retry, index).as_millis() as u64;
        Some(Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling)))
    }

    /// Calls `op` on the endpoints in order until one answers, retrying
    /// transient failures, never sending after `deadline` and abandoning a
    /// request still in flight at `deadline`.
    pub async fn call<T, F, Fut>(&self, deadline: Instant, op: F) -> Served<T>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempts = Vec::new();
        let mut last = "no endpoint".to_owned();
        for endpoint in &self.endpoints {
            let role = endpoint.role;
            let mut tries = 0u32;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    attempts.push(Attempt::skipped(role, "deadline"));
                    return Served::deadline_passed(self.stage, attempts);
                }
                if !endpoint.breaker.allow(now.into_std()) {
                    attempts.push(Attempt::skipped(role, "breaker_open"));
                    last = format!("{role} breaker open");
                    break;
                }
                tries += 1;
                let answer = tokio::time::timeout_at(deadline, op(endpoint.client.clone())).await;
                let ms = crate::millis(now.elapsed());
                let failure = match answer {
                    Ok(Ok(value)) => {
                        endpoint.breaker.succeeded();
                        attempts.push(Attempt { endpoint: role, sent: true, outcome: "ok".into(), ms });
                        return Served { result: Ok(value), attempts };
                    }
                    Ok(Err(failure)) => failure,
                    Err(_) => {
                        endpoint.breaker.failed(std::time::Instant::now());
                        attempts.push(Attempt { endpoint: role, sent: true, outcome: "deadline".into(), ms });
                        return Served::deadline_passed(self.stage, attempts);
                    }
                };
                if endpoint.breaker.failed(std::time::Instant::now()) {
                    tracing::warn!(stage = self.stage, endpoint = role, "circuit breaker opened");
                }
                tracing::warn!(stage = self.stage, endpoint = role, kind = %failure.kind, error = %failure.message, "online request failed");
                attempts.push(Attempt { endpoint: role, sent: true, outcome: failure.kind, ms });
                last = failure.message;
                let wait = match self.next_wait(tries) {
                    Some(wait) if failure.transient => wait,
                    _ => break,
                };
                if Instant::now() + wait >= deadline {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
        }
        Served { result: Err(OnlineError::Exhausted { stage: self.stage, last }), attempts }
    }
}

/// The online endpoints and the privacy policy that says what may use them.
pub struct Online {
    privacy: Privacy,
    devices: BTreeMap<String, Privacy>,
    stt: Option<Chain<SttClient>>,
    intent: Option<Chain<ChatClient>>,
    deadline: Duration,
}

impl Online {
    /// Builds the endpoints of `config`, reading their API keys, and checks
    /// the per-device policies against `catalog`.
    pub fn from_config(config: &OnlineConfig, catalog: &Catalog) -> Result<Online, OnlineError> {
        if let Some(unknown) = config.devices.keys().find(|id| catalog.device(id).is_none()) {
            return Err(OnlineError::Config(format!("online.devices: '{unknown}' is not a device of the catalog")));
        }
        let stt = match &config.stt {
            None => None,
            Some(primary) => Some(Chain::build("stt", primary, &config.retry, |endpoint, key| {
                let timeout = Duration::from_millis(endpoint.timeout_ms);
                let client =
                    SttClient::new(&endpoint.url, key, timeout).map_err(|e| OnlineError::Config(e.to_string()))?;
                Ok(client.with_model(&endpoint.model))
            })?),
        };
        let intent = match &config.intent {
            None => None,
            Some(primary) => Some(Chain::build("intent", primary, &config.retry, |endpoint, key| {
                let params = ChatParams {
                    temperature: endpoint.temperature.unwrap_or(0.0),
                    strict: endpoint.strict.unwrap_or(true),
                    max_tokens: endpoint.max_tokens,
                };
                let timeout = Duration::from_millis(endpoint.timeout_ms);
                let client = ChatClient::new(&endpoint.url, key, &endpoint.model, timeout)
                    .map_err(|e| OnlineError::Config(e.to_string()))?;
                Ok(client.with_params(params))
            })?),
        };
        Ok(Online {
            privacy: config.privacy,
            devices: config.devices.clone(),
            stt,
            intent,
            deadline: Duration::from_millis(config.deadline_ms),
        })
    }

    /// The instant after which nothing is sent for an utterance that ended at `ended`.
    pub fn deadline(&self, ended: std::time::Instant) -> Instant {
        Instant::from_std(ended) + self.deadline
    }

    /// Why audio may not go online, or `None` when it may.
    pub fn stt_refusal(&self) -> Option<Reason> {
        match (&self.stt, self.privacy) {
            (None, _) => Some(Reason::OnlineOff),
            (_, Privacy::Never | Privacy::Text) => Some(Reason::Privacy),
            (Some(chain), Privacy::Any) if !chain.available() => Some(Reason::OnlineUnavailable),
            _ => None,
        }
    }

    /// Why a transcript naming `devices` may not go online, or `None` when it may.
    pub fn intent_refusal(&self, devices: &[String]) -> Option<Reason> {
        let Some(chain) = &self.intent else { return Some(Reason::OnlineOff) };
        if self.privacy == Privacy::Never {
            return Some(Reason::Privacy);
        }
        if devices.iter().any(|d| self.devices.get(d).is_some_and(|p| *p == Privacy::Never)) {
            return Some(Reason::DeviceLocalOnly);
        }
        if !chain.available() {
            return Some(Reason::OnlineUnavailable);
        }
        None
    }

    /// Transcribes online (the caller checked [`Online::stt_refusal`]).
    pub async fn transcribe(
        &self,
        samples: &[f32],
        priming: crate::stt::Priming<'_>,
        deadline: Instant,
    ) -> Served<SttResult> {
        let Some(chain) = &self.stt else { return Served::unconfigured("stt") };
        chain
            .call(deadline, |client| async move {
                client.transcribe(samples, priming).await.map_err(|e| Failure::of_stt(&e))
            })
            .await
    }

    /// Interprets with the online model (the caller checked
    /// [`Online::intent_refusal`]); the answer is validated against the catalog.
    pub async fn interpret(
        &self,
        interpreter: &Interpreter,
        planned: &Planned,
        deadline: Instant,
    ) -> Served<Interpretation> {
        let Some(chain) = &self.intent else { return Served::unconfigured("intent") };
        chain
            .call(deadline, |client| async move {
                interpreter.interpret_planned_via(planned, &client).await.map_err(|e| Failure::of_intent(&e))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chain(immediate: bool, backoff_retries: u32, roles: &[&'static str]) -> Chain<&'static str> {
        let retry = RetryConfig {
            immediate,
            backoff_retries,
            backoff_base_ms: 1,
            backoff_max_ms: 4,
            breaker_failures: 3,
            breaker_open_ms: 60_000,
        };
        Chain {
            stage: "test",
            endpoints: roles
                .iter()
                .copied()
                .map(|r| Endpoint { role: r, client: r, breaker: Breaker::new(3, Duration::from_secs(60)) })
                .collect(),
            retry,
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let retry = RetryConfig { backoff_base_ms: 50, backoff_max_ms: 400, ..RetryConfig::default() };
        let ceilings: Vec<u128> = (0..6).map(|i| backoff_ceiling(&retry, i).as_millis()).collect();
        assert_eq!(ceilings, vec![50, 100, 200, 400, 400, 400]);
    }

    #[tokio::test]
    async fn transient_failures_climb_the_ladder_then_the_backup_answers() {
        let chain = chain(true, 2, &["primary", "backup"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let served = chain
            .call(deadline, |client| async move {
                if client == "primary" {
                    Err(Failure::new("status_503", "busy", true))
                } else {
                    Ok(client)
                }
            })
            .await;
        assert_eq!(served.result.unwrap(), "backup");
        let outcomes: Vec<(&str, &str)> = served.attempts.iter().map(|a| (a.endpoint, a.outcome.as_str())).collect();
        // First try, the immediate retry, two backoff retries; the third failure opened the breaker.
        assert_eq!(outcomes[..3], [("primary", "status_503"), ("primary", "status_503"), ("primary", "status_503")]);
        assert_eq!(outcomes[3..], [("primary", "breaker_open"), ("backup", "ok")]);
    }

    #[tokio::test]
    async fn a_wrong_key_goes_straight_to_the_backup() {
        let chain = chain(true, 2, &["primary", "backup"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let served = chain
            .call(deadline, |client| async move {
                if client == "primary" {
                    Err(Failure::from_status(401, "wrong key".into()))
                } else {
                    Ok(client)
                }
            })
            .await;
        assert_eq!(served.result.unwrap(), "backup");
        assert_eq!(served.attempts.len(), 2);
        assert_eq!(served.attempts[0].outcome, "unauthorized");
    }

    #[tokio::test]
    async fn nothing_is_sent_after_the_deadline_and_a_slow_answer_is_abandoned() {
        let chain = chain(true, 2, &["primary"]);
        let past = Instant::now();
        let served = chain.call(past, |_| async { Ok::<_, Failure>(()) }).await;
        assert!(matches!(served.result, Err(OnlineError::DeadlinePassed { attempts: 0, .. })));
        assert!(!served.attempts[0].sent);

        let deadline = Instant::now() + Duration::from_millis(30);
        let served = chain
            .call(deadline, |_| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, Failure>(())
            })
            .await;
        assert!(matches!(served.result, Err(OnlineError::DeadlinePassed { attempts: 1, .. })), "{:?}", served.result);
        assert_eq!(served.attempts.len(), 1);
    }
}
