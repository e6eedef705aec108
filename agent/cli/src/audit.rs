//! `hearken audit`: audit log tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use hearken::audit;

#[derive(Subcommand)]
/// `hearken audit …`.
pub(crate) enum AuditCommand {
    /// Verify the hash chain of an audit log (rotated segments FILE.1, FILE.2, … included).
    ///
    /// Exits 0 and prints a summary for an intact log; exits 1 and names the
    /// first bad record (file, line, seq) otherwise, including a torn last record.
    Verify {
        /// The active audit log file.
        file: PathBuf,
    },
}

/// Runs one `audit` subcommand.
pub(crate) fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { file } => audit_verify(&file),
    }
}

fn audit_verify(path: &Path) -> ExitCode {
    match audit::verify(path) {
        Ok(report) => {
            println!(
                "{}",
                json!({"ok": true, "files": report.files, "records": report.records, "head": report.head, "incomplete": report.incomplete})
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (file, line, seq) = match &e {
                audit::AuditError::Broken { path, line, seq, .. } => (Some(path.clone()), Some(*line), *seq),
                audit::AuditError::Io { path, .. } => (Some(path.clone()), None, None),
            };
            println!("{}", json!({"ok": false, "file": file, "line": line, "seq": seq, "error": e.to_string()}));
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
