//! systemd's notify protocol (`Type=notify`): READY, STATUS, WATCHDOG and
//! STOPPING datagrams to `$NOTIFY_SOCKET`. Without that variable (not run by
//! systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notify socket, if there is one.
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|address| {
            let socket = UnixDatagram::unbound().ok()?;
            Some((socket, address))
        });
        Notifier { socket }
    }

    /// Sends one notification such as `READY=1`; failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        let Some((socket, address)) = &self.socket else { return };
        let sent = match address.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|a| socket.send_to_addr(message.as_bytes(), &a))
            }
            None => socket.send_to(message.as_bytes(), address),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }

    /// Tells systemd the service is ready, with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// Updates the status line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// Tells systemd the service is stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Pings the watchdog.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

/// Half the watchdog interval systemd asks for (`$WATCHDOG_USEC`), if it asks.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier =
            Notifier { socket: Some((UnixDatagram::unbound().unwrap(), path.to_string_lossy().into_owned())) };
        notifier.ready("serving");
        let mut buffer = [0u8; 128];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=serving");
    }
}
