//! Payloads on acknowledgement and state topics, which anyone allowed to
//! publish there controls: the hearken-protocol acknowledgement parser and
//! the zigbee2mqtt/Tasmota echo matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let _ = hearken::catalog::protocol::parse_hearken_ack(data);
    for (key, value) in [("state", json!("ON")), ("brightness", json!(120)), ("POWER", json!("OFF"))] {
        if let Some(state) = hearken::catalog::protocol::echo_confirms(data, key, &value) {
            assert!(state.is_object(), "a confirming echo is a JSON object");
        }
    }
});
