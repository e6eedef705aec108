//! The prompt for the intent model. Instructions, few-shot examples about a
//! fictional catalog (examples about the site's own devices get copied by a
//! small model) and the site's whole device list come first and are the same
//! for every utterance, so the engine keeps them in its KV cache; only the
//! request follows.

use crate::catalog::{Catalog, Device};

use super::client::Message;

const INSTRUCTIONS: &str = "You turn one spoken request into device commands as JSON. \
Use only the devices and actions listed with the request. \
Give one command for each device the request asks to change.";

/// (devices, request, answer) examples over a catalog the sites do not have,
/// chosen for verbs that are not action names.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "- desk_lamp \"desk lamp\": turn_on, turn_off, set_brightness (0-100 percent)\n- water_pump \"water pump\": start, stop",
        "switch the desk lamp off",
        r#"{"commands":[{"action":"turn_off","device":"desk_lamp"}]}"#,
    ),
    (
        "- awning \"awning\": open, close\n- alarm_beacon \"alarm beacon\": turn_on, turn_off",
        "roll down the awning",
        r#"{"commands":[{"action":"open","device":"awning"}]}"#,
    ),
    (
        "- awning \"awning\": open, close\n- alarm_beacon \"alarm beacon\": turn_on, turn_off",
        "clear the alarm beacon and put the awning away",
        r#"{"commands":[{"action":"turn_off","device":"alarm_beacon"},{"action":"close","device":"awning"}]}"#,
    ),
    (
        "- greenhouse_vent \"greenhouse vent\": open, close, set_position (0-100 percent)\n- water_pump \"water pump\": start, stop",
        "greenhouse vent to 40 percent and get the water pump going",
        r#"{"commands":[{"action":"set_position","device":"greenhouse_vent","value":40},{"action":"start","device":"water_pump"}]}"#,
    ),
    (
        "- mower \"mower\": start, stop, return_to_base\n- radio \"radio\": play, pause, set_volume (0-100 percent)",
        "send the mower home and quiet the radio",
        r#"{"commands":[{"action":"return_to_base","device":"mower"},{"action":"pause","device":"radio"}]}"#,
    ),
];

/// One line per candidate device: id, spoken name, actions with ranges.
pub fn device_lines(devices: &[&Device]) -> String {
    let mut lines = Vec::new();
    for device in devices {
        let actions: Vec<String> = device
            .actions
            .iter()
            .map(|action| match device.param(action) {
                Some(range) => match &range.unit {
                    Some(unit) => format!("{action} ({}-{} {unit})", range.min, range.max),
                    None => format!("{action} ({}-{})", range.min, range.max),
                },
                None => action.clone(),
            })
            .collect();
        lines.push(format!("- {} \"{}\": {}", device.id, device.name, actions.join(", ")));
    }
    lines.join("\n")
}

fn user_message(devices: &str, request: &str) -> String {
    format!("Devices:\n{devices}\nRequest: {request}")
}

/// The whole conversation for one request. Everything but the last line —
/// instructions, examples and the site's whole catalog — is the same for
/// every request of a site, so the engine decodes it once and keeps it.
pub fn messages(catalog: &Catalog, request: &str) -> Vec<Message> {
    let mut messages = vec![Message { role: "system", content: INSTRUCTIONS.to_owned() }];
    for (example_devices, example_request, answer) in EXAMPLES {
        messages.push(Message { role: "user", content: user_message(example_devices, example_request) });
        messages.push(Message { role: "assistant", content: (*answer).to_owned() });
    }
    let devices: Vec<&Device> = catalog.devices.iter().collect();
    messages.push(Message { role: "user", content: user_message(&device_lines(&devices), request) });
    messages
}
