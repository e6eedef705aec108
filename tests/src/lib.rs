//! Shared helpers for hearken's integration tests: paths into the repository
//! and the `hearken` binary. The broker itself comes from `hearken::testbed`.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file in the repository, e.g. `devices/home.toml`.
pub fn repo_file(relative: &str) -> PathBuf {
    repo_root().join(relative)
}
