//! A device catalog from arbitrary text: parsed and validated, and when it
//! is accepted, the JSON Schema the model is constrained by is built for
//! all of its devices. Must never panic; anything accepted must be usable.
#![no_main]

use std::path::Path;

use hearken::catalog::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(catalog) = Catalog::parse(Path::new("fuzz.toml"), text) {
        let devices: Vec<_> = catalog.devices.iter().collect();
        let schema = hearken::intent::utterance_schema(&devices, &[1, 50], devices.len().max(1));
        assert!(schema.is_object());
        for device in &catalog.devices {
            assert!(catalog.device(&device.id).is_some());
        }
    }
});
