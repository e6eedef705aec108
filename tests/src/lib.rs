//! Shared helpers for hearken's integration tests: repository paths, the
//! `hearken` binary, catalogs written on the fly, and a spy MQTT client that
//! records what really crossed the broker. The broker itself is
//! `hearken_testkit::testbed::Mosquitto`, a real Mosquitto process.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod rig;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file in the repository, e.g. `devices/home.toml`.
pub fn repo_file(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// The cargo that runs these tests, in the repository root.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    command
}

/// The `hearken` binary of this build, built on first use so that tests never
/// run a stale one.
pub fn hearken_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = cargo()
            // The same invocation as scripts/test.sh, so this is a no-op there and the
            // native engines are not compiled a second time with other features.
            .args(["build", "--quiet", "--workspace", "--all-targets", "--locked"])
            .status()
            .expect("cannot run cargo to build the hearken binary");
        assert!(status.success(), "building the hearken binary failed");
    });
    // target/<profile>/deps/<test-binary> → target/<profile>/hearken
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    // `hearken` starts engines from its own directory.
    std::env::set_var("HEARKEN_ENGINE_DIR", profile_dir);
    profile_dir.join("hearken")
}

/// Runs `hearken` with arguments and returns its output.
pub fn hearken(args: &[&str]) -> Output {
    Command::new(hearken_bin()).args(args).output().expect("cannot run hearken")
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a systemd unit's text into `dir` as `hearken.service`, its
/// `/usr/bin/hearken` pointed at `hearken`: `systemd-analyze verify` checks
/// that ExecStart's binary exists.
pub fn unit_for_analysis(dir: &Path, unit: &str, hearken: &Path) -> PathBuf {
    write_file(dir, "hearken.service", &unit.replace("/usr/bin/hearken", hearken.to_str().unwrap()))
}

/// `systemd-analyze verify` on a unit file.
pub fn systemd_verify(unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is missing (scripts/setup.sh installs systemd)")
}

/// One message seen by the spy.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// A plain MQTT client subscribed to a filter, recording every message.
pub struct Spy {
    pub client: AsyncClient,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Spy {
    /// Connects to `port` on loopback, subscribes to `filter` and waits for the SubAck.
    pub async fn start(port: u16, filter: &str) -> Spy {
        let id = format!("spy-{}", rand_suffix());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_start(true);
        let (client, mut events) = AsyncClient::new(options, 100);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(Seen {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    }),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), ready_rx).await.expect("spy did not subscribe").unwrap();
        Spy { client, seen }
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Messages seen on topics for which `keep` is true.
    pub fn seen_on(&self, keep: impl Fn(&str) -> bool) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| keep(&s.topic)).collect()
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// A catalog with one device per protocol, used across the MQTT tests.
pub const MIXED_CATALOG: &str = r#"
site = "lab"
budget_ms = 1000

[[devices]]
id = "desk_lamp"
name = "desk lamp"
actions = ["turn_on", "turn_off", "set_brightness"]
[devices.params.set_brightness]
min = 0
max = 100

[[devices]]
id = "zb_bulb"
name = "zigbee bulb"
actions = ["turn_on", "turn_off", "set_brightness"]
protocol = "zigbee2mqtt"
topic = "zigbee2mqtt/zb_bulb"
[devices.params.set_brightness]
min = 0
max = 254

[[devices]]
id = "plug"
name = "plug"
actions = ["turn_on", "turn_off"]
protocol = "tasmota"
topic = "plug"

[[devices]]
id = "ir_blaster"
name = "ir blaster"
actions = ["turn_on"]
ack = "broker"
"#;

/// Parses [`MIXED_CATALOG`] with its budget replaced by `budget_ms`.
pub fn mixed_catalog(budget_ms: u64) -> hearken::catalog::Catalog {
    let text = MIXED_CATALOG.replace("budget_ms = 1000", &format!("budget_ms = {budget_ms}"));
    hearken::catalog::Catalog::parse(Path::new("mixed.toml"), &text).unwrap()
}

/// Lines of the broker's log that record a PUBLISH received from `client_id`,
/// counting only since the broker's last (re)start.
pub fn broker_received_publishes(log_dir: &Path, client_id: &str) -> Vec<String> {
    let log = std::fs::read_to_string(log_dir.join("mosquitto.log")).unwrap_or_default();
    let since_start = log.rsplit_once("starting").map_or(log.as_str(), |(_, after)| after);
    let needle = format!("Received PUBLISH from {client_id} ");
    since_start.lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

/// Runs a program and panics with its stderr if it fails.
pub fn run_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/setup.sh installs it)"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Speaks `text` with espeak-ng (voice `en`, 175 words per minute) into a
/// 16 kHz mono 16-bit WAV at `dir/name`.
pub fn synthesize(dir: &Path, name: &str, text: &str) -> PathBuf {
    let raw = dir.join(format!("{name}.raw.wav"));
    let out = dir.join(name);
    run_tool("espeak-ng", &["-v", "en", "-s", "175", "-w", raw.to_str().unwrap(), text]);
    run_tool("sox", &[raw.to_str().unwrap(), "-r", "16000", "-c", "1", "-b", "16", out.to_str().unwrap()]);
    out
}

/// The converted whisper tiny.en, which `scripts/test.sh` fetches before the tests.
pub fn whisper_model() -> PathBuf {
    hearken_bin(); // builds the engine and points HEARKEN_ENGINE_DIR at it
    let path = hearken::models::cache_dir().join(hearken::models::WHISPER_TINY_EN_GGML);
    assert!(path.exists(), "{} is missing: run `hearken models fetch` (scripts/test.sh does)", path.display());
    path
}

/// The converted Whisper base (multilingual) in the model cache (`hearken models fetch`).
pub fn whisper_base_model() -> PathBuf {
    hearken_bin();
    let path = hearken::models::cache_dir().join(hearken::models::WHISPER_BASE_GGML);
    assert!(path.exists(), "{} is missing: run `hearken models fetch` (scripts/test.sh does)", path.display());
    path
}

/// Lowercase words without punctuation, number words as digits: how
/// transcripts are compared with what was said.
pub fn normalize_transcript(text: &str) -> String {
    hearken_testkit::bench::normalize_words(text).join(" ")
}

/// The cached SmolLM2-135M-Instruct GGUF, which `scripts/test.sh` fetches before the tests.
pub fn intent_model() -> PathBuf {
    hearken_bin(); // builds the engines and points HEARKEN_ENGINE_DIR at them
    let path = hearken::models::smollm2_135m_path(&hearken::models::cache_dir());
    assert!(path.exists(), "{} is missing: run `hearken models fetch` (scripts/test.sh does)", path.display());
    path
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for localhost/127.0.0.1, plus a second, unrelated CA.
pub fn make_certificates(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for ca in ["ca", "other_ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}
