//! `hearken devices import --z2m` against real Zigbee2MQTT device
//! definitions (npm `zigbee-herdsman-converters`, the code Zigbee2MQTT runs
//! on, installed by `scripts/setup.sh`): 22 commandable models of every kind
//! and two that are not, published retained on a real Mosquitto as
//! `bridge/devices` and `bridge/groups`. The imported catalog passes
//! `devices check`, keeps the overlay, and every action it offers is sent
//! with native values the definition accepts and is acknowledged by the
//! simulator speaking the zigbee2mqtt protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearken::catalog::{Catalog, Kind};
use hearken::intent::{Interpreter, InterpreterConfig};
use hearken::local::LlamaProcess;
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::{hearken, hearken_bin, intent_model, repo_file, stderr, stdout, write_file, Spy};
use serde_json::{json, Value};

/// Model → friendly name (a slash puts the area first), and the kind hearken must give it.
const MODELS: &[(&str, &str, Option<&str>)] = &[
    ("LED1545G12", "living room/floor lamp", Some("light")), // IKEA bulb with colour temperature
    ("LED1623G12", "hallway light", Some("light")),          // IKEA white bulb, no colour temperature
    ("9290012573A", "kitchen/ceiling light", Some("light")), // Philips Hue colour
    ("8718699673147", "bedroom/bedside lamp", Some("light")), // Philips Hue white
    ("4058075816718", "office/desk bulb", Some("light")),    // OSRAM RGBW
    ("ZG9101SAC-HP", "dining room/pendant dimmer", Some("light")), // Sunricher dimmer
    ("ZNCZ02LM", "kitchen/coffee plug", Some("switch")),     // Xiaomi plug
    ("SIN-4-1-21_EQU", "printer plug", Some("switch")),      // ADEO plug
    ("QBKG04LM", "porch switch", Some("switch")),            // Aqara wall switch
    ("QBKG12LM", "stairs switch", Some("switch")),           // Aqara two-gang: two devices
    ("MG-AUWS01", "garage switch", Some("switch")),          // two-gang
    ("E1757", "bedroom/blind", Some("cover")),               // IKEA blind
    ("ZNCLDJ11LM", "living room/curtain", Some("cover")),    // Aqara curtain motor
    ("ZNCLDJ12LM", "office/curtain", Some("cover")),
    ("YRD426NRSC", "front door lock", Some("lock")),           // Yale
    ("BE468", "back door lock", Some("lock")),                 // Schlage
    ("014G2461", "living room/radiator", Some("climate")),     // Danfoss Ally TRV
    ("SPZB0001", "bedroom/radiator", Some("climate")),         // Eurotronic Spirit
    ("TS0601_thermostat", "office/radiator", Some("climate")), // Tuya TRV: current_heating_setpoint
    ("99432", "living room/ceiling fan", Some("fan")),         // Hampton Bay fan with a light
    ("E2007", "bedroom/air purifier", Some("fan")),            // IKEA Starkvind
    ("E1743", "kitchen/remote", None),                         // a remote: nothing to command
    ("HS2WD-E", "hall siren", None),                           // a siren: nothing hearken commands
];

/// A `hearken simulate` process, killed when the test ends (also when it fails).
struct Simulator(std::process::Child);

impl Simulator {
    fn start(broker: &Mosquitto, catalog: &Path) -> Simulator {
        let mut child = Command::new(hearken_bin())
            .args(["simulate", "--broker", &broker.url(), "--catalog", catalog.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
        assert!(ready.contains("ready"), "{ready}");
        Simulator(child)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where `scripts/setup.sh` installed the pinned zigbee-herdsman-converters.
fn definitions_dir() -> PathBuf {
    let version = std::fs::read_to_string(repo_file("tests/z2m/zhc-version")).unwrap();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    let dir = cache.join("hearken/npm").join(format!("zigbee-herdsman-converters-{}", version.trim()));
    assert!(
        dir.join("node_modules/zigbee-herdsman-converters/package.json").exists(),
        "{} is missing: run scripts/setup.sh (it installs the npm package)",
        dir.display()
    );
    dir
}

/// The `bridge/devices` payload Zigbee2MQTT would publish for MODELS.
fn bridge_devices() -> Value {
    let args: Vec<String> = MODELS.iter().map(|(model, name, _)| format!("{model}={name}")).collect();
    let out = Command::new("node")
        .arg(repo_file("tests/z2m/bridge_devices.js"))
        .args(&args)
        .env("NODE_PATH", definitions_dir().join("node_modules"))
        .output()
        .expect("node not found: run scripts/setup.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn publish_retained(broker: &Mosquitto, topic: &str, payload: &str, dir: &Path) {
    let file = write_file(dir, "payload.json", payload);
    let status = Command::new("mosquitto_pub")
        .args(["-p", &broker.port().to_string(), "-r", "-q", "1", "-t", topic, "-f"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every feature of an expose list, composite features included, by property.
fn features(exposes: &Value, into: &mut BTreeMap<String, Value>) {
    for expose in exposes.as_array().into_iter().flatten() {
        if let Some(property) = expose["property"].as_str() {
            into.entry(property.to_owned()).or_insert_with(|| expose.clone());
        }
        features(&expose["features"], into);
    }
}

/// Whether Zigbee2MQTT would accept `value` for the feature: settable, in range, one of its values.
fn accepts(feature: &Value, value: &Value) -> Result<(), String> {
    if feature["access"].as_u64().unwrap_or(0) & 2 == 0 {
        return Err(format!("{} is not settable", feature["property"]));
    }
    match feature["type"].as_str() {
        Some("binary") => {
            if value != &feature["value_on"] && value != &feature["value_off"] {
                return Err(format!("{value} is neither {} nor {}", feature["value_on"], feature["value_off"]));
            }
        }
        Some("numeric") => {
            let v = value.as_f64().ok_or(format!("{value} is not a number"))?;
            let min = feature["value_min"].as_f64().unwrap_or(f64::MIN);
            let max = feature["value_max"].as_f64().unwrap_or(f64::MAX);
            if v < min || v > max {
                return Err(format!("{v} outside {min}..={max}"));
            }
        }
        Some("enum") => {
            if !feature["values"].as_array().unwrap().contains(value) {
                return Err(format!("{value} not in {}", feature["values"]));
            }
        }
        other => return Err(format!("unexpected feature type {other:?}")),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_definitions_import_to_a_catalog_whose_every_action_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let devices = bridge_devices();
    let address = |name: &str| {
        devices.as_array().unwrap().iter().find(|d| d["friendly_name"] == name).unwrap()["ieee_address"].clone()
    };
    let groups = json!([
        {"id": 1, "friendly_name": "living room/lamps", "scenes": [],
         "members": [{"ieee_address": address("living room/floor lamp"), "endpoint": 1},
                     {"ieee_address": address("kitchen/ceiling light"), "endpoint": 11}]},
        {"id": 2, "friendly_name": "empty group", "scenes": [], "members": []}
    ]);
    publish_retained(&broker, "zigbee2mqtt/bridge/devices", &devices.to_string(), dir.path());
    publish_retained(&broker, "zigbee2mqtt/bridge/groups", &groups.to_string(), dir.path());
    let overlay = write_file(
        dir.path(),
        "overlay.toml",
        r#"
site = "home-1"
[[floors]]
name = "ground floor"
[[areas]]
name = "living room"
aliases = ["lounge"]
floor = "ground floor"
[devices.kitchen_ceiling_light]
aliases = ["big light"]
[devices.garage_switch_right]
skip = true
[devices.front_door_lock]
confirm = ["lock", "unlock"]
"#,
    );

    let out =
        hearken(&["devices", "import", "--z2m", "--broker", &broker.url(), "--overlay", overlay.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let skipped = stderr(&out);
    assert!(skipped.contains("kitchen/remote"), "{skipped}");
    assert!(skipped.contains("hall siren"), "{skipped}");
    assert!(skipped.contains("group empty group"), "{skipped}");
    let path = write_file(dir.path(), "imported.toml", &text);
    let check = hearken(&["devices", "check", path.to_str().unwrap()]);
    assert!(check.status.success(), "{}\n{text}", stderr(&check));
    let catalog = Catalog::load(&path).unwrap();
    assert_eq!(catalog.site, "home-1");

    // Kinds, endpoints, native ranges, keys, the overlay.
    for (model, name, kind) in MODELS {
        let topic = format!("zigbee2mqtt/{name}");
        let made: Vec<_> = catalog.devices.iter().filter(|d| d.topic == topic).collect();
        match kind {
            None => assert!(made.is_empty(), "{model}: {made:?}"),
            Some(kind) => {
                assert!(!made.is_empty(), "{model} ({name}) not imported\n{text}");
                assert_eq!(made[0].kind, Kind::from_name(kind), "{model}");
            }
        }
    }
    let device = |id: &str| catalog.device(id).unwrap_or_else(|| panic!("no {id} in\n{text}"));
    let lamp = device("living_room_floor_lamp");
    assert_eq!(lamp.area.as_deref(), Some("living room"));
    assert_eq!((lamp.params["set_brightness"].min, lamp.params["set_brightness"].max), (0, 254));
    assert_eq!(lamp.params["set_color_temp"].unit.as_deref(), Some("mired"));
    assert!(!device("hallway_light").has_action("set_color_temp"), "a white bulb has no colour temperature");
    assert_eq!(device("stairs_switch_left").keys["turn_on"], "state_left");
    assert!(catalog.device("garage_switch_right").is_none(), "the overlay skips it");
    assert_eq!(device("kitchen_ceiling_light").aliases, ["big light"]);
    assert_eq!(device("front_door_lock").confirm, ["lock", "unlock"]);
    assert_eq!(device("back_door_lock").confirm, ["unlock"], "unlocking waits for confirmation by default");
    assert_eq!(device("office_radiator").keys["set_temperature"], "current_heating_setpoint");
    assert_eq!(device("living_room_ceiling_fan").keys["turn_on"], "fan_state");
    assert_eq!(device("living_room_ceiling_fan_light").kind, Some(Kind::Light));
    let group = device("living_room_lamps");
    assert_eq!(group.actions, ["turn_on", "turn_off", "set_brightness", "set_color_temp"]);
    assert_eq!(group.params["set_color_temp"].min, 250, "the range every member accepts");
    assert_eq!(group.members, ["living_room_floor_lamp", "kitchen_ceiling_light"], "so no member is sent it twice");

    // Every action, with native values at both ends and between, is accepted and acknowledged.
    let simulator = Simulator::start(&broker, &path);
    // Not `zigbee2mqtt/#`: the retained device list is larger than a spy's packet limit.
    let wire =
        [Spy::start(broker.port(), "zigbee2mqtt/+/set").await, Spy::start(broker.port(), "zigbee2mqtt/+/+/set").await];
    let mut sent = 0;
    for d in &catalog.devices {
        for action in &d.actions {
            let values: Vec<Option<i64>> = match d.param(action) {
                Some(r) => vec![Some(r.min), Some(r.max), Some((r.min + r.max) / 2)],
                None => vec![None],
            };
            for value in values {
                let mut args = vec!["send", "--broker", &broker.url(), "--catalog", path.to_str().unwrap()]
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
                args.extend([d.id.clone(), action.clone()]);
                args.extend(value.map(|v| v.to_string()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = hearken(&args);
                let line: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
                assert_eq!(line["outcome"], "acknowledged", "{} {action} {value:?}: {line} {}", d.id, stderr(&out));
                sent += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(simulator);

    // What went on the wire is what each real definition accepts.
    let mut by_topic: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for device in devices.as_array().unwrap().iter().skip(1) {
        let mut all = BTreeMap::new();
        features(&device["definition"]["exposes"], &mut all);
        by_topic.insert(format!("zigbee2mqtt/{}/set", device["friendly_name"].as_str().unwrap()), all);
    }
    let sets: Vec<_> = wire.iter().flat_map(Spy::seen).collect();
    assert_eq!(sets.len(), sent, "one /set per command");
    let mut checked = 0;
    for message in &sets {
        let payload: serde_json::Map<String, Value> = serde_json::from_slice(&message.payload).unwrap();
        let Some(features) = by_topic.get(&message.topic) else {
            assert_eq!(message.topic, "zigbee2mqtt/living room/lamps/set", "only the group is no device");
            continue;
        };
        for (key, value) in &payload {
            let feature = features.get(key).unwrap_or_else(|| panic!("{}: no feature {key}", message.topic));
            if let Err(why) = accepts(feature, value) {
                panic!("{} {key}={value}: {why}", message.topic);
            }
            checked += 1;
        }
    }
    assert!(checked >= 70, "{checked} payload keys checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_percent_to_an_imported_lamp_is_its_native_half() {
    let dir = tempfile::tempdir().unwrap();
    let devices = bridge_devices();
    let import = hearken::catalog::import::z2m::import(devices.to_string().as_bytes(), None, "zigbee2mqtt").unwrap();
    let text =
        hearken::catalog::import::write_catalog("home", &import, &hearken::catalog::import::Overlay::default(), "test");
    let catalog = Catalog::parse(&write_file(dir.path(), "c.toml", &text), &text).unwrap();
    let engine = LlamaProcess::start(&intent_model(), 2).await.unwrap();
    let interpreter =
        Interpreter::new(catalog, engine.client(Duration::from_secs(30)).unwrap(), InterpreterConfig::default());
    let got = interpreter.interpret("set the living room floor lamp to 50 percent").await.unwrap();
    assert_eq!(
        serde_json::to_value(&got.commands).unwrap(),
        json!([{"device": "living_room_floor_lamp", "action": "set_brightness", "value": 127}])
    );
}

/// A Tasmota discovery message as firmware 9.x+ publishes it (SetOption19 0).
fn tasmota_config(
    mac: &str,
    name: &str,
    topic: &str,
    model: &str,
    relays: &[u8],
    friendly: &[&str],
    extra: Value,
) -> Value {
    let mut config = json!({
        "ip": "192.168.1.50", "dn": name, "fn": friendly, "hn": format!("{topic}-1234"), "mac": mac,
        "md": model, "ty": 0, "if": 0, "ofln": "Offline", "onln": "Online", "state": ["OFF", "ON", "TOGGLE", "HOLD"],
        "sw": "13.2.0", "t": topic, "ft": "%prefix%/%topic%/", "tp": ["cmnd", "stat", "tele"],
        "rl": relays, "swc": [-1, -1, -1, -1, -1, -1, -1, -1], "swn": [null, null, null, null, null, null, null, null],
        "btn": [0, 0, 0, 0, 0, 0, 0, 0], "so": {"4": 0, "11": 0, "13": 0, "17": 0, "20": 0, "30": 0, "68": 0, "73": 0, "82": 0, "114": 0, "117": 0},
        "lk": 0, "lt_st": 0, "sho": [0, 0, 0, 0], "sht": [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], "ver": 1
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasmota_discovery_imports_relays_lights_and_fans_that_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let configs = [
        (
            "DC4F22000001",
            tasmota_config(
                "DC4F22000001",
                "Kettle",
                "kettle",
                "Sonoff Basic",
                &[1, 0, 0, 0, 0, 0, 0, 0],
                &["Kettle"],
                json!({}),
            ),
        ),
        (
            "DC4F22000002",
            tasmota_config(
                "DC4F22000002",
                "Dual",
                "dual",
                "Sonoff Dual R2",
                &[1, 1, 0, 0, 0, 0, 0, 0],
                &["Fountain", "Pond Pump"],
                json!({}),
            ),
        ),
        (
            "DC4F22000003",
            tasmota_config(
                "DC4F22000003",
                "Desk Bulb",
                "deskbulb",
                "Generic CT bulb",
                &[2, 0, 0, 0, 0, 0, 0, 0],
                &["Desk Bulb"],
                json!({"lt_st": 2}),
            ),
        ),
        (
            "DC4F22000004",
            tasmota_config(
                "DC4F22000004",
                "Ceiling",
                "ifan",
                "Sonoff iFan03",
                &[2, 0, 0, 0, 0, 0, 0, 0],
                &["Ceiling Light"],
                json!({"if": 1}),
            ),
        ),
    ];
    for (mac, config) in &configs {
        publish_retained(&broker, &format!("tasmota/discovery/{mac}/config"), &config.to_string(), dir.path());
    }
    let out = hearken(&["devices", "import", "--tasmota", "--broker", &broker.url(), "--site", "home"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let path = write_file(dir.path(), "tasmota.toml", &text);
    let catalog = Catalog::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ids: Vec<&str> = catalog.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["kettle", "fountain", "pond_pump", "desk_bulb", "ceiling_light", "ceiling_fan"], "{text}");
    let device = |id: &str| catalog.device(id).unwrap();
    assert_eq!(device("pond_pump").keys["turn_on"], "POWER2", "the second relay of two");
    assert!(device("kettle").keys.is_empty(), "a single relay is POWER");
    assert_eq!(device("desk_bulb").kind, Some(Kind::Light));
    assert_eq!(device("desk_bulb").params["set_color_temp"].max, 500);
    assert_eq!(device("ceiling_fan").params["set_speed"].max, 3);

    let simulator = Simulator::start(&broker, &path);
    let wire = Spy::start(broker.port(), "cmnd/#").await;
    let mut sent = 0;
    for d in &catalog.devices {
        for action in &d.actions {
            let value = d.param(action).map(|r| r.max.to_string());
            let mut args = vec!["send", "--broker", &broker.url(), "--catalog", path.to_str().unwrap(), &d.id, action]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            args.extend(value);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = hearken(&args);
            let line: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
            assert_eq!(line["outcome"], "acknowledged", "{} {action}: {line}", d.id);
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(simulator);
    let topics: Vec<String> = wire.seen().into_iter().map(|m| m.topic).collect();
    assert_eq!(topics.len(), sent);
    assert!(topics.contains(&"cmnd/dual/POWER2".to_owned()), "{topics:?}");
    assert!(topics.contains(&"cmnd/ifan/FanSpeed".to_owned()), "{topics:?}");
    assert!(topics.contains(&"cmnd/deskbulb/CT".to_owned()), "{topics:?}");
}

/// The `bridge/devices` payload for some of MODELS (by friendly name), renamed where asked.
fn bridge_subset(all: &Value, names: &[(&str, &str)]) -> Value {
    let mut list = vec![all[0].clone()];
    for (name, renamed) in names {
        let mut device = all.as_array().unwrap().iter().find(|d| d["friendly_name"] == *name).unwrap().clone();
        device["friendly_name"] = Value::from(*renamed);
        list.push(device);
    }
    Value::Array(list)
}

#[test]
fn a_followed_zigbee2mqtt_reaches_the_running_daemon_when_devices_join_rename_and_leave() {
    use hearken_testkit::fake_engines::FakeEngine;
    use hearken_tests::rig::{serial, Daemon};
    use rumqttc::v5::mqttbytes::QoS;

    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let all = bridge_devices();
    let first = bridge_subset(
        &all,
        &[
            ("living room/floor lamp", "living room/floor lamp"),
            ("kitchen/coffee plug", "kitchen/coffee plug"),
            ("front door lock", "front door lock"),
        ],
    );
    let second = bridge_subset(
        &all,
        &[
            ("living room/floor lamp", "living room/floor lamp"),
            ("kitchen/coffee plug", "kitchen/kettle plug"),
            ("front door lock", "front door lock"),
            ("hallway light", "hallway light"),
        ],
    );
    let third = bridge_subset(
        &all,
        &[
            ("living room/floor lamp", "living room/floor lamp"),
            ("kitchen/coffee plug", "kitchen/kettle plug"),
            ("hallway light", "hallway light"),
        ],
    );
    // The simulated Zigbee network answers for every device any version has.
    let every = bridge_subset(
        &all,
        &[
            ("living room/floor lamp", "living room/floor lamp"),
            ("kitchen/coffee plug", "kitchen/coffee plug"),
            ("kitchen/coffee plug", "kitchen/kettle plug"),
            ("front door lock", "front door lock"),
            ("hallway light", "hallway light"),
        ],
    );
    let import =
        |list: &Value| hearken::catalog::import::z2m::import(list.to_string().as_bytes(), None, "zigbee2mqtt").unwrap();
    let overlay = hearken::catalog::import::Overlay::default();
    let simulated = write_file(
        dir.path(),
        "network.toml",
        &hearken::catalog::import::write_catalog("home", &import(&every), &overlay, "test"),
    );
    let simulator = Simulator::start(&broker, &simulated);

    // As a user starts: import once, then let the daemon follow.
    publish_retained(&broker, "zigbee2mqtt/bridge/devices", &first.to_string(), dir.path());
    let out = hearken(&["devices", "import", "--z2m", "--broker", &broker.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let catalog = write_file(dir.path(), "catalog.toml", &stdout(&out));
    let other = r#"{"intent":"other","commands":[]}"#;
    let chat = runtime.block_on(FakeEngine::chat(&[], other)).unwrap();
    let stt = runtime.block_on(FakeEngine::stt(&[], "")).unwrap();
    let config = write_file(
        dir.path(),
        "hearken.toml",
        &format!(
            "catalog = {:?}\n\n[broker]\nurl = \"{}\"\n\n[audio]\nsource = \"text\"\n\n[stt]\nurl = \"{}\"\n\n[intent]\nurl = \"{}\"\n\n\
             [zigbee2mqtt]\nfollow = true\n\n[limits]\ndevice_commands_per_minute = 1000\n\n[audit]\npath = \"audit.log\"\n",
            catalog.to_str().unwrap(),
            broker.url(),
            stt.url(),
            chat.url()
        ),
    );
    let events = runtime.block_on(Spy::start(broker.port(), "hearken/home/events"));
    let sender = runtime.block_on(Spy::start(broker.port(), "nothing/here"));
    let mut daemon = Daemon::start_without_models(&config, true);
    daemon.ready();
    let of_type = |kind: &str| -> Vec<Value> {
        events
            .seen()
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
            .filter(|e| e["type"] == kind)
            .collect()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let ask = |id: &str, text: &str| -> Value {
        let payload = json!({"text": text, "id": id}).to_string();
        runtime
            .block_on(sender.client.publish("hearken/home/text", QoS::AtLeastOnce, false, payload.into_bytes()))
            .unwrap();
        wait(&format!("a reply to {id}"), &|| of_type("text_reply").iter().any(|r| r["request_id"] == id));
        of_type("text_reply").into_iter().find(|r| r["request_id"] == id).unwrap()
    };
    assert_eq!(ask("a", "turn on the coffee plug")["commands"][0]["outcome"], "acknowledged");
    std::thread::sleep(Duration::from_millis(800));
    assert!(of_type("catalog_loaded").is_empty(), "the list it started from is no change");
    // A stream of requests to the lamp, which every version has, runs across each change.
    let stream = |from: usize, to: usize| {
        for n in from..to {
            let verb = if n % 2 == 0 { "turn on" } else { "turn off" };
            let payload = json!({"text": format!("{verb} the floor lamp"), "id": format!("s{n}")}).to_string();
            runtime
                .block_on(sender.client.publish("hearken/home/text", QoS::AtLeastOnce, false, payload.into_bytes()))
                .unwrap();
        }
    };
    stream(0, 50);

    // A device joins and another is renamed.
    let changed = Instant::now();
    publish_retained(&broker, "zigbee2mqtt/bridge/devices", &second.to_string(), dir.path());
    wait("catalog_loaded after the join", &|| !of_type("catalog_loaded").is_empty());
    let loaded = of_type("catalog_loaded").remove(0);
    assert_eq!(loaded["trigger"], "zigbee2mqtt");
    assert_eq!(loaded["added"], json!(["kitchen_kettle_plug", "hallway_light"]), "{loaded}");
    assert_eq!(loaded["removed"], json!(["kitchen_coffee_plug"]), "{loaded}");
    let joined = ask("b", "turn on the hallway light");
    assert_eq!(joined["commands"][0]["outcome"], "acknowledged", "{joined}");
    eprintln!(
        "z2m follow: a joined device acknowledged {} ms after bridge/devices changed",
        changed.elapsed().as_millis()
    );
    assert_eq!(ask("c", "turn off the kettle plug")["commands"][0]["outcome"], "acknowledged");
    assert!(ask("d", "turn on the coffee plug")["commands"].as_array().unwrap().is_empty(), "the old name is gone");

    // A device leaves, under the next 50.
    stream(50, 100);
    publish_retained(&broker, "zigbee2mqtt/bridge/devices", &third.to_string(), dir.path());
    wait("catalog_loaded after the removal", &|| of_type("catalog_loaded").len() >= 2);
    assert_eq!(of_type("catalog_loaded")[1]["removed"], json!(["front_door_lock"]));
    let gone = ask("e", "lock the front door");
    assert_eq!(gone["commands"], json!([]), "{gone}");
    assert!(["no_device", "no_such_device"].contains(&gone["no_command_reason"].as_str().unwrap()), "{gone}");
    stream(100, 150);
    let streamed: Vec<String> = (0..150).map(|n| format!("s{n}")).collect();
    wait("a reply to every streamed request", &|| {
        let replies = of_type("text_reply");
        streamed.iter().all(|id| replies.iter().any(|r| &r["request_id"] == id))
    });
    let replies = of_type("text_reply");
    let lost: Vec<&Value> = streamed
        .iter()
        .map(|id| replies.iter().find(|r| &r["request_id"] == id).unwrap())
        .filter(|r| r["commands"][0]["outcome"] != "acknowledged")
        .collect();
    assert!(lost.is_empty(), "requests lost across the changes: {lost:?}");
    eprintln!("z2m follow: 150 streamed requests across 2 changes (join + rename, leave), lost 0");

    drop(daemon.child.stdin.take());
    daemon.stopped();
    assert_eq!(daemon.exit_code(), 0);
    drop(simulator);
}
