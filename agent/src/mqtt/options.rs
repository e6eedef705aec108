//! Broker address, credentials and TLS, turned into rumqttc options.

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};

use super::MqttError;

/// Everything needed to reach the broker. The password is never printed:
/// `Debug` redacts it.
#[derive(Clone, Default)]
pub struct BrokerOptions {
    /// `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (default 8883).
    pub url: String,
    /// Username, if the broker requires one.
    pub username: Option<String>,
    /// Password, read from a file or the environment by the caller, never from argv.
    pub password: Option<String>,
    /// CA certificate (PEM) that signs the broker's certificate; enables TLS checks for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) for `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl std::fmt::Debug for BrokerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerOptions")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

/// Keep-alive interval: short enough that a dead broker is noticed quickly.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT_SECS: u64 = 3;

/// QoS 1 publishes a client has outstanding with the broker at once; more
/// wait in the client until the broker acknowledges earlier ones (within
/// about a millisecond on a local broker).
const OUTGOING_INFLIGHT: u16 = 256;

impl BrokerOptions {
    /// Options for a broker URL without credentials or TLS files.
    pub fn new(url: impl Into<String>) -> BrokerOptions {
        BrokerOptions { url: url.into(), ..BrokerOptions::default() }
    }

    /// Builds rumqttc options for one client. Clean start and no session
    /// expiry: the broker keeps nothing for us, so nothing can be replayed
    /// after a reconnect.
    pub fn to_mqtt_options(&self, client_id: &str) -> Result<MqttOptions, MqttError> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| MqttError::BadUrl { url: self.url.clone(), reason: e.to_string() })?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(MqttError::BadUrl {
                    url: self.url.clone(),
                    reason: format!("scheme '{other}' is not mqtt:// or mqtts://"),
                })
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| MqttError::BadUrl { url: self.url.clone(), reason: "no host".to_owned() })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_clean_start(true);
        options.set_session_expiry_interval(None);
        options.set_keep_alive(KEEP_ALIVE);
        options.set_connection_timeout(CONNECT_TIMEOUT_SECS);
        // rumqttc preallocates a slot per possible in-flight QoS 1 publish:
        // its default, 65 535, costs ~14 MB per client for nothing.
        options.set_outgoing_inflight_upper_limit(OUTGOING_INFLIGHT);
        // Commands are tiny and latency-bound: Nagle's algorithm would hold
        // them back for the peer's delayed ACK (~40 ms).
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        let username =
            self.username.clone().or_else(|| (!url.username().is_empty()).then(|| url.username().to_owned()));
        if let Some(user) = username {
            options.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        if tls {
            options.set_transport(self.tls_transport()?);
        } else if self.ca_file.is_some() || self.client_cert.is_some() {
            return Err(MqttError::BadUrl {
                url: self.url.clone(),
                reason: "TLS files were given but the URL is not mqtts://".to_owned(),
            });
        }
        Ok(options)
    }

    fn tls_transport(&self) -> Result<Transport, MqttError> {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|source| MqttError::TlsFile { file: path.clone(), source });
        let Some(ca_path) = &self.ca_file else {
            return Err(MqttError::BadUrl {
                url: self.url.clone(),
                reason: "mqtts:// needs --ca-file (the CA that signed the broker's certificate)".to_owned(),
            });
        };
        let ca = read(ca_path)?;
        let client_auth = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => {
                return Err(MqttError::BadUrl {
                    url: self.url.clone(),
                    reason: "a client certificate needs both --client-cert and --client-key".to_owned(),
                })
            }
        };
        Ok(Transport::tls_with_config(TlsConfiguration::Simple { ca, alpn: None, client_auth }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_url_with_default_port() {
        let options = BrokerOptions::new("mqtt://127.0.0.1").to_mqtt_options("c").unwrap();
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 1883));
        assert!(options.clean_start());
    }

    #[test]
    fn bad_urls_and_tls_without_ca_are_clear_errors() {
        assert!(BrokerOptions::new("http://x").to_mqtt_options("c").is_err());
        assert!(BrokerOptions::new("not a url").to_mqtt_options("c").is_err());
        let err = BrokerOptions::new("mqtts://x").to_mqtt_options("c").unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let options = BrokerOptions { password: Some("hunter2".into()), ..BrokerOptions::new("mqtt://x") };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
