//! An audit file as an attacker or a torn write may leave it: `hearken
//! audit verify` must report it, valid or not, without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.log");
    std::fs::write(&path, data).expect("write");
    if let Ok(verified) = hearken::audit::verify(&path) {
        assert_eq!(verified.head.len(), 64, "a verified log has a SHA-256 head");
    }
});
