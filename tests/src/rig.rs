//! The daemon-level rig shared by the integration tests that run `hearken
//! run`: synthesized recordings, a private broker with the simulated home
//! devices, daemon configs, the daemon process and its JSON lines, and the
//! audit log checked against its schema.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearken_testkit::testbed::Mosquitto;
use serde_json::Value;

use crate::*;

/// One daemon (and its engines) at a time, per test binary.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A piece of a synthesized recording.
pub enum Part<'a> {
    Say(&'a str),
    Silence(f64),
}

/// Builds a 16 kHz recording from spoken text and silences.
pub fn recording(dir: &Path, name: &str, parts: &[Part]) -> PathBuf {
    let mut files = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let file = match part {
            Part::Say(text) => synthesize(dir, &format!("{name}-{i}.wav"), text),
            Part::Silence(seconds) => {
                let file = dir.join(format!("{name}-{i}.wav"));
                let secs = format!("{seconds}");
                run_tool(
                    "sox",
                    &["-n", "-r", "16000", "-c", "1", "-b", "16", file.to_str().unwrap(), "trim", "0", &secs],
                );
                file
            }
        };
        files.push(file.to_str().unwrap().to_owned());
    }
    let out = dir.join(format!("{name}.wav"));
    let mut args: Vec<&str> = files.iter().map(String::as_str).collect();
    args.push(out.to_str().unwrap());
    run_tool("sox", &args);
    out
}

/// A scratch directory, a private broker and the simulated home devices.
pub fn rig() -> (tempfile::TempDir, Mosquitto, Devices) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let devices = Devices::start(&broker.url());
    (dir, broker, devices)
}

/// The `[audio]` lines for a file source.
pub fn file_source(recording: &Path, realtime: bool) -> String {
    format!("source = \"file\"\nfile = {:?}\nrealtime = {realtime}", recording.to_str().unwrap())
}

/// A daemon config for the home catalog; `extra` is appended (more sections).
pub fn config(dir: &Path, broker: &str, audio: &str, extra: &str) -> PathBuf {
    let catalog = repo_file("devices/home.toml");
    let text = format!(
        "catalog = {catalog:?}\n\n[broker]\nurl = \"{broker}\"\nconnect_timeout_ms = 3000\n\n[audio]\n{audio}\n\n\
         [stt]\nthreads = 2\n\n[intent]\nthreads = 2\n\n[engines]\nrestart_backoff_min_ms = 200\nhealth_interval_ms = 500\n\n\
         [audit]\npath = \"audit.log\"\nfsync_interval_ms = 0\n\n{extra}\n",
        catalog = catalog.to_str().unwrap()
    );
    write_file(dir, "hearken.toml", &text)
}

/// A running `hearken run` and its JSON lines.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Daemon {
    pub fn start(config: &Path, stdin: bool) -> Daemon {
        whisper_model();
        intent_model();
        Daemon::start_without_models(config, stdin)
    }

    /// A daemon whose engines are servers the config names (fake engines): no model is fetched.
    pub fn start_without_models(config: &Path, stdin: bool) -> Daemon {
        let mut child = Command::new(hearken_bin())
            .args(["run", "--config", config.to_str().unwrap()])
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start hearken run");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Daemon { child, lines, seen: Vec::new() }
    }

    /// The next line that satisfies `want`, within `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {timeout:?}; lines so far: {:#?}", self.seen),
            }
        }
    }

    pub fn ready(&mut self) -> Value {
        self.wait_for("ready line", Duration::from_secs(180), |l| l["daemon"] == "ready")
    }

    pub fn utterance(&mut self, id: u64) -> Value {
        self.wait_for(&format!("utterance {id}"), Duration::from_secs(60), |l| {
            // Confirmation decisions name their utterance too; they carry a decision.
            l["utterance"] == id && l["decision"].is_null()
        })
    }

    pub fn stopped(&mut self) -> Value {
        self.wait_for("stopped line", Duration::from_secs(60), |l| l["daemon"] == "stopped")
    }

    pub fn exit_code(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hearken simulate` for the home catalog: answers every command, and says
/// how many it received when stopped.
pub struct Devices(pub Child, mpsc::Receiver<Value>);

impl Devices {
    pub fn start(broker: &str) -> Devices {
        Devices::start_with(broker, &[])
    }

    /// The simulator with more flags (latency, faults).
    pub fn start_with(broker: &str, flags: &[&str]) -> Devices {
        Devices::spawn(broker, &repo_file("devices/home.toml"), flags)
    }

    /// The simulator for another catalog.
    pub fn start_catalog(broker: &str, catalog: &Path) -> Devices {
        Devices::spawn(broker, catalog, &[])
    }

    fn spawn(broker: &str, catalog: &Path, flags: &[&str]) -> Devices {
        let mut child = Command::new(hearken_bin())
            .args(["simulate", "--broker", broker, "--catalog", catalog.to_str().unwrap()])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str::<Value>(&line).unwrap());
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(15)).expect("simulator not ready");
        assert_eq!(ready["simulator"], "ready");
        Devices(child, rx)
    }

    /// Stops the simulator and returns how many commands it received.
    pub fn received(mut self) -> u64 {
        signal(self.0.id(), "TERM");
        let summary = self.1.recv_timeout(Duration::from_secs(10)).expect("no simulator summary");
        let _ = self.0.wait();
        summary["received"].as_u64().unwrap()
    }
}

impl Drop for Devices {
    /// A simulator left running would outlive its test, retrying a broker that is gone.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    run_tool("kill", &[&format!("-{name}"), &pid.to_string()]);
}

pub fn acknowledged(line: &Value) -> Vec<(String, String, Value)> {
    line["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no commands in {line}"))
        .iter()
        .filter(|c| c["outcome"] == "acknowledged")
        .map(|c| {
            (c["device"].as_str().unwrap().to_owned(), c["action"].as_str().unwrap().to_owned(), c["value"].clone())
        })
        .collect()
}

pub fn cmd(device: &str, action: &str, value: Value) -> (String, String, Value) {
    (device.to_owned(), action.to_owned(), value)
}

/// The audit log's records, after checking that it verifies and that every
/// record matches schemas/audit-record.schema.json.
pub fn audit_records(dir: &Path) -> Vec<Value> {
    let out = hearken(&["audit", "verify", dir.join("audit.log").to_str().unwrap()]);
    assert!(out.status.success(), "audit log does not verify: {}", stdout(&out));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("schemas/audit-record.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let records: Vec<Value> = std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for record in &records {
        let errors: Vec<String> =
            validator.iter_errors(record).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{record}\n{errors:?}");
    }
    records
}

pub fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}
