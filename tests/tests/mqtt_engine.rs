//! The MQTT command engine against a real Mosquitto and the device simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use hearken::catalog::Command;
use hearken::mqtt::{BrokerOptions, CommandLink, LinkStats, Outcome};
use hearken_testkit::simulator::{Simulator, SimulatorConfig};
use hearken_testkit::testbed::Mosquitto;
use hearken_tests::{broker_received_publishes, mixed_catalog, Spy};
use rumqttc::v5::mqttbytes::QoS;

const WAIT: Duration = Duration::from_secs(5);

fn cmd(device: &str, action: &str, value: Option<i64>) -> Command {
    Command { device: device.into(), action: action.into(), value }
}

async fn setup(broker: &Mosquitto, budget_ms: u64, config: SimulatorConfig) -> (CommandLink, Simulator) {
    let catalog = Arc::new(mixed_catalog(budget_ms));
    let options = BrokerOptions::new(broker.url());
    let simulator = Simulator::start(&options, catalog.clone(), config).unwrap();
    assert!(simulator.wait_ready(1, WAIT).await, "simulator not ready");
    let link = CommandLink::start(&options, catalog).unwrap();
    link.wait_connected(WAIT).await.unwrap();
    (link, simulator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_is_acknowledged_within_budget_with_device_state() {
    let broker = Mosquitto::start().unwrap();
    let (link, _sim) = setup(&broker, 200, SimulatorConfig::default()).await;

    let hearken = link.send(&cmd("desk_lamp", "set_brightness", Some(40))).await.unwrap();
    assert_eq!(hearken.outcome, Outcome::Acknowledged, "{hearken:?}");
    assert_eq!(hearken.state.as_ref().unwrap()["brightness"], 40);
    assert!(hearken.broker_accepted || hearken.latency < Duration::from_millis(200));

    let zigbee = link.send(&cmd("zb_bulb", "set_brightness", Some(200))).await.unwrap();
    assert_eq!(zigbee.outcome, Outcome::Acknowledged, "{zigbee:?}");
    assert_eq!(zigbee.state.as_ref().unwrap()["brightness"], 200);

    let tasmota = link.send(&cmd("plug", "turn_on", None)).await.unwrap();
    assert_eq!(tasmota.outcome, Outcome::Acknowledged, "{tasmota:?}");
    assert_eq!(tasmota.state.as_ref().unwrap()["POWER"], "ON");

    let fire_and_forget = link.send(&cmd("ir_blaster", "turn_on", None)).await.unwrap();
    assert_eq!(fire_and_forget.outcome, Outcome::Accepted, "{fire_and_forget:?}");
    assert!(fire_and_forget.broker_accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commands_are_refused_and_nothing_is_published() {
    let broker = Mosquitto::start().unwrap();
    let spy = Spy::start(broker.port(), "#").await;
    let (link, _sim) = setup(&broker, 200, SimulatorConfig::default()).await;
    for bad in [
        cmd("desk_lamp", "set_brightness", Some(101)),
        cmd("desk_lamp", "unlock", None),
        cmd("toaster", "turn_on", None),
        cmd("desk_lamp", "set_brightness", None),
        cmd("plug", "turn_on", Some(1)),
    ] {
        assert!(link.send(&bad).await.is_err(), "{bad:?} was not refused");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let commands = spy.seen_on(|t| t.ends_with("/set") || t.starts_with("cmnd/"));
    assert!(commands.is_empty(), "published: {commands:?}");
    assert_eq!(LinkStats::get(&link.stats().published), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_acknowledgement_times_out_but_notes_broker_acceptance() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { drop_rate: 1.0, ..SimulatorConfig::default() };
    let (link, sim) = setup(&broker, 100, config).await;
    for command in [cmd("desk_lamp", "turn_on", None), cmd("zb_bulb", "turn_on", None), cmd("plug", "turn_off", None)] {
        let d = link.send(&command).await.unwrap();
        assert_eq!(d.outcome, Outcome::Timeout, "{d:?}");
        assert!(d.broker_accepted, "{d:?}");
        assert!(d.latency >= Duration::from_millis(100), "{d:?}");
        assert!(d.reason.unwrap().contains("no device acknowledgement"));
    }
    assert_eq!(LinkStats::get(&sim.stats().dropped), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_acknowledgement_is_reported_as_late_not_as_success() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { late_rate: 1.0, late_by: Duration::from_millis(300), ..SimulatorConfig::default() };
    let (link, _sim) = setup(&broker, 100, config).await;
    let mut late = link.late_acks();
    for command in [cmd("desk_lamp", "turn_on", None), cmd("zb_bulb", "turn_on", None)] {
        let d = link.send(&command).await.unwrap();
        assert_eq!(d.outcome, Outcome::Timeout, "{d:?}");
        let late_ack = tokio::time::timeout(WAIT, late.recv()).await.unwrap().unwrap();
        assert_eq!(late_ack.command_id, d.command_id);
        assert!(late_ack.latency >= Duration::from_millis(300), "{late_ack:?}");
    }
    assert_eq!(LinkStats::get(&link.stats().acknowledged), 0);
    assert_eq!(LinkStats::get(&link.stats().late_acks), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_acknowledgements_are_ignored() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { forge_rate: 1.0, ..SimulatorConfig::default() };
    let (link, sim) = setup(&broker, 150, config).await;
    let hearken = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(hearken.outcome, Outcome::Timeout, "{hearken:?}");
    assert_eq!(LinkStats::get(&link.stats().unknown_correlation), 1);
    // zigbee2mqtt: the forged echo reports a state the command did not produce.
    let zigbee = link.send(&cmd("zb_bulb", "turn_on", None)).await.unwrap();
    assert_eq!(zigbee.outcome, Outcome::Timeout, "{zigbee:?}");
    assert!(LinkStats::get(&link.stats().ignored_echoes) >= 1);
    assert_eq!(LinkStats::get(&sim.stats().forged), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_acknowledgements_are_ignored_and_counted() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { malformed_rate: 1.0, ..SimulatorConfig::default() };
    let (link, _sim) = setup(&broker, 150, config).await;
    let hearken = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(hearken.outcome, Outcome::Timeout, "{hearken:?}");
    assert_eq!(LinkStats::get(&link.stats().malformed_acks), 1);
    let tasmota = link.send(&cmd("plug", "turn_on", None)).await.unwrap();
    assert_eq!(tasmota.outcome, Outcome::Timeout, "{tasmota:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_refusal_is_rejected_with_its_reason() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { reject_rate: 1.0, ..SimulatorConfig::default() };
    let (link, _sim) = setup(&broker, 200, config).await;
    let d = link.send(&cmd("desk_lamp", "turn_off", None)).await.unwrap();
    assert_eq!(d.outcome, Outcome::Rejected, "{d:?}");
    assert_eq!(d.reason.as_deref(), Some("simulated refusal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_acknowledgements_count_once() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { duplicate_rate: 1.0, ..SimulatorConfig::default() };
    let (link, _sim) = setup(&broker, 300, config).await;
    for i in 0..5 {
        let d = link.send(&cmd("desk_lamp", "set_brightness", Some(i))).await.unwrap();
        assert_eq!(d.outcome, Outcome::Acknowledged);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(LinkStats::get(&link.stats().acknowledged), 5);
    assert_eq!(LinkStats::get(&link.stats().duplicate_acks), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_that_predates_the_command_is_not_an_acknowledgement() {
    let broker = Mosquitto::start().unwrap();
    let spy = Spy::start(broker.port(), "nothing/here").await;
    // A retained echo that already says "ON", as a bridge leaves behind.
    spy.client.publish("zigbee2mqtt/zb_bulb", QoS::AtLeastOnce, true, r#"{"state":"ON"}"#).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // No simulator: nobody will really answer.
    let catalog = Arc::new(mixed_catalog(150));
    let link = CommandLink::start(&BrokerOptions::new(broker.url()), catalog).unwrap();
    link.wait_connected(WAIT).await.unwrap();
    let d = link.send(&cmd("zb_bulb", "turn_on", None)).await.unwrap();
    assert_eq!(d.outcome, Outcome::Timeout, "{d:?}");
    assert!(LinkStats::get(&link.stats().ignored_echoes) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_commands_in_flight_are_each_acknowledged_exactly_once() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(20),
        ..SimulatorConfig::default()
    };
    let (link, sim) = setup(&broker, 2000, config).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300i64 {
        let link = link.clone();
        tasks.spawn(async move { link.send(&cmd("desk_lamp", "set_brightness", Some(i % 101))).await.unwrap() });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(d) = tasks.join_next().await {
        let d = d.unwrap();
        assert_eq!(d.outcome, Outcome::Acknowledged, "{d:?}");
        assert!(ids.insert(d.command_id));
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(LinkStats::get(&link.stats().acknowledged), 300);
    assert_eq!(LinkStats::get(&link.stats().duplicate_acks), 0);
    assert_eq!(LinkStats::get(&sim.stats().duplicate_commands), 0);
    assert_eq!(LinkStats::get(&sim.stats().received), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_absent_at_start_means_not_sent_and_nothing_published_later() {
    let mut broker = Mosquitto::start_with("log_type all").unwrap();
    broker.stop();
    let catalog = Arc::new(mixed_catalog(200));
    let options = BrokerOptions::new(broker.url());
    let link = CommandLink::start(&options, catalog.clone()).unwrap();
    let err = link.wait_connected(Duration::from_millis(500)).await.unwrap_err();
    assert!(err.to_string().contains("not reachable"), "{err}");
    let d = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(d.outcome, Outcome::NotSent, "{d:?}");

    broker.restart().unwrap();
    let simulator = Simulator::start(&options, catalog, SimulatorConfig::default()).unwrap();
    assert!(simulator.wait_ready(1, WAIT).await);
    link.wait_connected(Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        broker_received_publishes(broker.dir(), link.client_id()).is_empty(),
        "the refused command was published after the broker came up"
    );
    let d = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(d.outcome, Outcome::Acknowledged, "{d:?}");
    let log = std::fs::read_to_string(broker.dir().join("mosquitto.log")).unwrap_or_default();
    assert_eq!(broker_received_publishes(broker.dir(), link.client_id()).len(), 1, "{}\n{log}", link.client_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_run_replays_nothing_and_later_commands_work() {
    let mut broker = Mosquitto::start_with("log_type all").unwrap();
    // Slow devices keep commands in flight when the broker dies.
    let config = SimulatorConfig { latency: Duration::from_millis(400), ..SimulatorConfig::default() };
    let (link, sim) = setup(&broker, 1000, config).await;
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..5i64 {
        let link = link.clone();
        in_flight.spawn(async move { link.send(&cmd("desk_lamp", "set_brightness", Some(i))).await.unwrap() });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(LinkStats::get(&link.stats().published), 5);
    broker.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Commands while the broker is down are not sent, and must never go out later.
    let during = link.send(&cmd("desk_lamp", "turn_off", None)).await.unwrap();
    assert_eq!(during.outcome, Outcome::NotSent, "{during:?}");
    while let Some(d) = in_flight.join_next().await {
        let d = d.unwrap();
        assert!(matches!(d.outcome, Outcome::Timeout | Outcome::NotSent), "{d:?}");
    }
    broker.restart().unwrap();
    link.wait_connected(Duration::from_secs(10)).await.unwrap();
    assert!(sim.wait_ready(2, Duration::from_secs(10)).await, "simulator did not resubscribe");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replayed = broker_received_publishes(broker.dir(), link.client_id());
    assert!(replayed.is_empty(), "replayed after reconnect: {replayed:?}");

    let after = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(after.outcome, Outcome::Acknowledged, "{after:?}");
    let log = std::fs::read_to_string(broker.dir().join("mosquitto.log")).unwrap_or_default();
    assert_eq!(broker_received_publishes(broker.dir(), link.client_id()).len(), 1, "{}\n{log}", link.client_id());
    assert!(LinkStats::get(&link.stats().connections) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_resolves_everything_in_flight() {
    let broker = Mosquitto::start().unwrap();
    let config = SimulatorConfig { drop_rate: 1.0, ..SimulatorConfig::default() };
    let (link, _sim) = setup(&broker, 5000, config).await;
    let pending = {
        let link = link.clone();
        tokio::spawn(async move { link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(WAIT, link.shutdown()).await.expect("shutdown hung");
    let d = tokio::time::timeout(WAIT, pending).await.unwrap().unwrap();
    assert_eq!(d.outcome, Outcome::Timeout, "{d:?}");
    let after = link.send(&cmd("desk_lamp", "turn_on", None)).await.unwrap();
    assert_eq!(after.outcome, Outcome::NotSent, "{after:?}");
}
