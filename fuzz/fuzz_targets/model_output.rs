//! What a model (local or online) may answer, and what a transcript may
//! say. The reply parser must accept only commands the catalog allows; the
//! interpreter's word stage (normalizer, linker, planner) must take any text.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use hearken::catalog::Catalog;

use hearken::intent::ChatClient;
use hearken::intent::{parse_reply, Interpreter, InterpreterConfig};
use libfuzzer_sys::fuzz_target;

fn interpreter() -> &'static Interpreter {
    static INTERPRETER: OnceLock<Interpreter> = OnceLock::new();
    INTERPRETER.get_or_init(|| {
        let text = include_str!("../../devices/home.toml");
        let catalog = Catalog::parse(Path::new("home.toml"), text).expect("the home catalog");
        // Never asked: only the word stage runs here.
        let client = ChatClient::new("http://127.0.0.1:9", None, "local", Duration::from_millis(1))
            .expect("client");
        Interpreter::new(catalog, client, InterpreterConfig::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let interpreter = interpreter();
    if let Ok(commands) = parse_reply(interpreter.catalog(), text) {
        for command in &commands {
            assert!(interpreter.catalog().check(command).is_ok(), "parse_reply let through {command:?}");
        }
    }
    let preview = interpreter.preview(text);
    for device in &preview.devices {
        assert!(interpreter.catalog().device(device).is_some(), "preview named {device}, not in the catalog");
    }
});
