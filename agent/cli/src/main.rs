//! The `hearken` command line: thin glue over the library; `anyhow` lives only here.

//! One file per subcommand; this file is the dispatcher.

mod audit;
mod bench;
mod common;
mod devices;
mod import;
mod interpret;
mod listen;
mod models;
mod process;
mod run;
mod send;
mod simulate;
mod transcribe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearken",
    version,
    about = "Voice control for edge boxes: catalog-checked device commands over MQTT, acknowledged and audited"
)]
struct Cli {
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Subcommand)]
enum TopCommand {
    /// Run the voice-control daemon: audio → VAD → speech engine → intent engine →
    /// catalog validation → confirmation → MQTT → acknowledgement → audit.
    ///
    /// Prints {"daemon":"ready",…} once the engines are healthy, then one JSON line per
    /// utterance (transcript, commands with outcomes, stage latencies, audit_seq) and per
    /// confirmation decision, and {"daemon":"stopped",…} after draining on SIGTERM/SIGINT
    /// (or at the end of a file source). Speaks systemd's notify protocol when run by it.
    Run(run::RunArgs),
    /// Check or print the daemon's configuration.
    #[command(subcommand)]
    Config(run::ConfigCommand),
    /// The daemon's pipeline offline (VAD → STT → intent, no MQTT) over WAV files.
    ///
    /// Prints one JSON line per detected utterance:
    /// {"file","start_ms","end_ms","text","commands","needs_confirmation","latency_ms":{"vad","stt","nlu","total"}}.
    Process(process::ProcessArgs),
    /// The whole system on a bundled recording: a private Mosquitto, the simulated devices
    /// of devices/home.toml and the daemon, printing each transcript, command,
    /// acknowledgement and stage latency, then the audit verification.
    Demo(hearken_testkit::demo::DemoArgs),
    /// Check device catalogs, print the model-output schema, list audio inputs.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Send one command and wait for the device's acknowledgement.
    ///
    /// Prints one JSON line: {"device","action","value","outcome","latency_ms","state",…}.
    /// Exit status: 0 acknowledged, 2 refused before publishing (invalid command or
    /// catalog), 3 sent but not acknowledged (accepted, timeout, rejected, not_sent).
    Send(send::SendArgs),
    /// Run simulated devices for every device of a catalog until interrupted.
    ///
    /// Prints {"simulator":"ready",…} once subscribed and a summary line at exit.
    Simulate(simulate::SimulateArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Transcribe WAV files with the local whisper engine (started for the run)
    /// or a running OpenAI-compatible server (--stt-url).
    ///
    /// Prints one JSON line per file: {"file","text","latency_ms":{"stt":…}}, or
    /// {"file","error"} for a file that cannot be read; exits 1 if any failed.
    Transcribe(transcribe::TranscribeArgs),
    /// Listen to the microphone (or raw 16 kHz s16le PCM on stdin), cut it into
    /// utterances with the VAD and transcribe each one.
    ///
    /// Prints one JSON line per utterance: {"source","start_ms","end_ms","cut","text","latency_ms":{"stt":…}}.
    /// From the microphone, an utterance that arrives while 8 wait for the recognizer is
    /// dropped; the counts go to stderr at the end.
    Listen(listen::ListenArgs),
    /// Turn text into catalog-validated commands with the local intent engine (started for
    /// the run) or a running OpenAI-compatible chat server (--llm-url).
    ///
    /// Prints one JSON line per utterance:
    /// {"text","commands","needs_confirmation","latency_ms":{"nlu":…}} (with "no_command_reason" and
    /// "explanation" when there is no command), or {"text","error"}
    /// when the model's reply was refused; exits 1 if any was.
    Interpret(interpret::InterpretArgs),
    /// Fetch, convert and locate models (cached outside the repository).
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Benchmarks; each prints one JSON report.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    hearken::init_logging();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(command: TopCommand) -> anyhow::Result<ExitCode> {
    match command {
        TopCommand::Run(args) => runtime()?.block_on(run::run(args)),
        TopCommand::Config(command) => Ok(run::config(command)),
        TopCommand::Process(args) => runtime()?.block_on(process::process(args)),
        TopCommand::Demo(args) => runtime()?.block_on(hearken_testkit::demo::demo(args)),
        TopCommand::Devices(command) => devices::run(command),
        TopCommand::Send(args) => runtime()?.block_on(send::send(args)),
        TopCommand::Simulate(args) => runtime()?.block_on(simulate::simulate(args)),
        TopCommand::Audit(command) => Ok(audit::run(command)),
        TopCommand::Transcribe(args) => runtime()?.block_on(transcribe::transcribe(args)),
        TopCommand::Listen(args) => runtime()?.block_on(listen::listen(args)),
        TopCommand::Interpret(args) => runtime()?.block_on(interpret::interpret(args)),
        TopCommand::Models(command) => models::run(command),
        TopCommand::Bench(command) => bench::run(command),
    }
}

/// The async runtime of the subcommands that need one: two workers, enough for I/O.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}
