//! Everything of hearken that only tests and benchmarks use: a throwaway
//! Mosquitto broker, simulated devices with fault injection, the benchmarks
//! behind `hearken bench`, the dev-set scorer, the demo, the soak and the
//! burst. The `hearken` binary links it for its `demo`, `bench` and
//! `simulate` subcommands; the daemon library never does.
//!
//! # Layout
//!
//! - [`testbed`]: a private Mosquitto on a free loopback port, CPU burners.
//! - [`fake_engines`]: scripted stand-ins for the engines' HTTP API (daemon logic tests without models).
//! - [`simulator`]: simulated devices for every protocol, with latency and faults.
//! - [`bench`](mod@bench): `hearken bench mqtt | stt | vad`.
//! - [`eval`]: intent accuracy on the dev sets (`hearken bench nlu`).
//! - [`demo`]: `hearken demo` and `hearken bench e2e`.
//! - [`burst`]: `hearken bench burst`.
//! - [`hearing`]: `hearken bench hearing` (a text set in natural voices through `hearken process`).
//! - [`soak`]: `hearken bench soak`.
//! - [`speech`]: test speech in natural voices (Kokoro, Piper), rooms and noise.

pub mod bench;
pub mod burst;
pub mod demo;
pub mod eval;
pub mod fake_engines;
pub mod hearing;
pub mod simulator;
pub mod soak;
pub mod speech;
pub mod testbed;
