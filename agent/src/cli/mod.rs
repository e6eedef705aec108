//! Subcommands of the `hearken` binary that have a file of their own
//! (the older ones still live in `main.rs`).

pub mod burst;
pub mod demo;
pub mod interpret;
pub mod process;
pub mod run;
pub mod soak;
