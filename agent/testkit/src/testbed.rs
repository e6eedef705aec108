//! A throwaway Mosquitto broker on a free loopback port, for the integration
//! tests and `hearken bench`. It is the real broker, started as a child
//! process with a generated configuration, and killed on drop; and CPU
//! burners for the busy-box benchmark and test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting the test broker.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// Mosquitto is not installed.
    #[error("mosquitto not found (looked at $HEARKEN_MOSQUITTO, /usr/sbin/mosquitto and PATH); run scripts/setup.sh")]
    NotInstalled,
    /// Starting or preparing the broker failed.
    #[error("cannot start mosquitto: {0}")]
    Io(#[from] std::io::Error),
    /// The broker did not accept connections in time.
    #[error("mosquitto did not listen on port {port} within 5 s; its log: {log}")]
    NotListening {
        /// The port it was asked to use.
        port: u16,
        /// What it wrote to its log.
        log: String,
    },
}

/// A running (or stopped, restartable) Mosquitto.
pub struct Mosquitto {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn mosquitto_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HEARKEN_MOSQUITTO") {
        return Some(PathBuf::from(path));
    }
    let standard = Path::new("/usr/sbin/mosquitto");
    if standard.exists() {
        return Some(standard.to_owned());
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("mosquitto")).find(|p| p.exists()))
}

/// A port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Mosquitto {
    /// Starts a plain, anonymous broker on a free port. It sets
    /// `set_tcp_nodelay true`: the harness's own clients (wire spies, the
    /// simulator) time what they see, and Nagle on the broker would delay
    /// them by up to 40 ms (hearken's link needs no such help: see
    /// docs/mqtt-latency.md).
    pub fn start() -> Result<Mosquitto, TestbedError> {
        Mosquitto::start_with("")
    }

    /// Starts a broker with Mosquitto's defaults (Nagle on), as Debian ships it.
    pub fn start_stock() -> Result<Mosquitto, TestbedError> {
        Mosquitto::launch(false, "")
    }

    /// Starts a broker whose configuration has `extra` appended (extra
    /// listeners, TLS, authentication). The plain listener on [`Mosquitto::port`]
    /// always exists.
    pub fn start_with(extra: &str) -> Result<Mosquitto, TestbedError> {
        Mosquitto::launch(true, extra)
    }

    fn launch(nodelay: bool, extra: &str) -> Result<Mosquitto, TestbedError> {
        let nodelay = if nodelay { "set_tcp_nodelay true\n" } else { "" };
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("hearken-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{nodelay}max_inflight_messages 1000\nmax_queued_messages 100000\nlog_dest stderr\n{extra}\n"
        );
        std::fs::write(dir.join("mosquitto.conf"), config)?;
        let mut broker = Mosquitto { port, dir, child: None };
        broker.restart()?;
        Ok(broker)
    }

    /// The plain listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The directory holding the configuration and log (and any files a test puts there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the broker (as a crash would: no clean disconnects).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the broker on the same port and waits until it listens.
    pub fn restart(&mut self) -> Result<(), TestbedError> {
        self.stop();
        let binary = mosquitto_binary().ok_or(TestbedError::NotInstalled)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("mosquitto.log"))?,
            ))
            .spawn()?;
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        Err(TestbedError::NotListening { port: self.port, log })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU burners: `n` processes that spin (each at most 15 minutes, in case
/// whoever started them dies without stopping them), stopped on drop: the
/// busy box of `hearken bench e2e --busy-cores` and the busy-core test.
/// Processes, not threads of the caller: the engines leave hearken's own CPU
/// time (their supervisor's and its children's) out of what they count as
/// other work, and a burner is `timeout`'s child, not the supervisor's.
pub struct CpuBurners(Vec<Child>);

impl CpuBurners {
    /// Starts `n` burners.
    pub fn start(n: usize) -> std::io::Result<CpuBurners> {
        let mut burners = CpuBurners(Vec::new());
        for _ in 0..n {
            burners.0.push(Command::new("timeout").args(["900", "sh", "-c", "while :; do :; done"]).spawn()?);
        }
        Ok(burners)
    }
}

impl Drop for CpuBurners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // `timeout` passes the signal on to the spinning shell.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
