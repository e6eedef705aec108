//! The tamper-evident audit log: append-only JSON lines in a hash chain.
//!
//! Each record carries `seq` (consecutive from 0 across rotated files), `ts`,
//! `kind`, its own fields, `prev` (the previous record's hash, 64 zeros for
//! the first) and `hash` (SHA-256 of the record's canonical JSON without
//! `hash`: keys sorted, no whitespace). Editing a record breaks its hash;
//! deleting, inserting or reordering records breaks `seq` or `prev`.
//! A hash chain without a secret proves order and integrity against edits,
//! not against someone who rewrites the whole tail: auditors should copy the
//! head hash (printed by `hearken audit verify`) somewhere else regularly.
//!
//! # Durability
//!
//! A record is written with a single `write(2)` of the whole line, so a
//! process crash leaves either the complete record or a torn tail without a
//! newline. On open, a torn tail is moved to `<file>.torn-<unix-seconds>` and
//! a `recovered_torn_tail` record with its size, hash and text is appended,
//! so nothing disappears silently. `fsync` follows [`FsyncPolicy`]: the
//! default syncs in the background every 100 ms (group commit), so the
//! acknowledgement budget never waits for the disk; power loss can lose at
//! most that window.
//!
//! # Rotation
//!
//! When a file passes `max_bytes`, it is renamed to `<file>.<n>` (n = 1, 2,
//! …) and a new file starts with a `rotated` record that continues `seq` and
//! `prev`, so verification follows the chain across files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// When written records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every record: safest, costs a disk flush per record.
    Always,
    /// In the background at this interval (group commit).
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(100))
    }
}

/// Errors of the audit stage.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing a log file failed.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The log does not verify; names the first bad record.
    #[error("audit log {}:{line}: {message}", path.display())]
    Broken {
        /// The file holding the first bad record.
        path: PathBuf,
        /// 1-based line number in that file.
        line: usize,
        /// The record's `seq` when it could be read.
        seq: Option<u64>,
        /// What is wrong.
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_owned(), source }
}

/// Hash of a record: SHA-256 over its canonical JSON without `hash`.
fn record_hash(record: &Map<String, Value>) -> String {
    let mut canonical = record.clone();
    canonical.remove("hash");
    let bytes = serde_json::to_vec(&Value::Object(canonical)).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// Settings of an audit log.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditOptions {
    /// When records reach the disk.
    pub fsync: FsyncPolicy,
    /// Rotate once a file reaches this size; `None` never rotates.
    pub max_bytes: Option<u64>,
}

/// An open audit log. Share it behind an `Arc`; appends are serialized.
pub struct AuditLog {
    inner: Arc<Mutex<Writer>>,
    fsync: FsyncPolicy,
}

struct Writer {
    path: PathBuf,
    file: File,
    next_seq: u64,
    last_hash: String,
    bytes: u64,
    max_bytes: Option<u64>,
    dirty: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing its chain and
    /// recovering a torn tail. Fails on a log whose last complete record is
    /// unreadable: appending to a broken chain would hide the break.
    pub fn open(path: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(path)(e)),
        };
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = text.get(complete..).unwrap_or_default().to_vec();
        let (next_seq, last_hash) = match last_record(path, &text[..complete])? {
            Some(record) => record,
            None => match segments(path).into_iter().rev().find(|p| p != path) {
                Some(previous) => {
                    let bytes = std::fs::read(&previous).map_err(io_error(&previous))?;
                    last_record(&previous, &bytes)?.unwrap_or((0, GENESIS.to_owned()))
                }
                None => (0, GENESIS.to_owned()),
            },
        };
        if !torn.is_empty() {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let saved = PathBuf::from(format!("{}.torn-{now}", path.display()));
            std::fs::write(&saved, &torn).map_err(io_error(&saved))?;
            let file = OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
            file.set_len(complete as u64).map_err(io_error(path))?;
            file.sync_all().map_err(io_error(path))?;
            tracing::warn!(path = %path.display(), bytes = torn.len(), saved = %saved.display(), "audit log had a torn last record");
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_error(path))?;
        let writer = Writer {
            path: path.to_owned(),
            file,
            next_seq,
            last_hash,
            bytes: complete as u64,
            max_bytes: options.max_bytes,
            dirty: false,
        };
        let log = AuditLog { inner: Arc::new(Mutex::new(writer)), fsync: options.fsync };
        if !torn.is_empty() {
            let mut body = Map::new();
            body.insert("bytes".into(), json!(torn.len()));
            body.insert("sha256".into(), json!(hex::encode(Sha256::digest(&torn))));
            body.insert("text".into(), json!(String::from_utf8_lossy(&torn)));
            log.append("recovered_torn_tail", body)?;
        }
        if let FsyncPolicy::Interval(every) = options.fsync {
            spawn_syncer(Arc::downgrade(&log.inner), every);
        }
        Ok(log)
    }

    /// Appends one record of `kind` with `body`'s fields and returns its `seq`.
    /// `seq`, `ts`, `kind`, `prev` and `hash` are set here.
    pub fn append(&self, kind: &str, body: Map<String, Value>) -> Result<u64, AuditError> {
        let mut writer = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let seq = writer.write_record(kind, body)?;
        if self.fsync == FsyncPolicy::Always {
            writer.sync()?;
        }
        if writer.max_bytes.is_some_and(|max| writer.bytes >= max) {
            writer.rotate()?;
            if self.fsync == FsyncPolicy::Always {
                writer.sync()?;
            }
        }
        Ok(seq)
    }

    /// Forces written records to disk (used at shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).sync()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!("audit log sync at close failed: {e}");
        }
    }
}

impl Writer {
    fn write_record(&mut self, kind: &str, body: Map<String, Value>) -> Result<u64, AuditError> {
        let seq = self.next_seq;
        let mut record = body;
        record.insert("seq".into(), json!(seq));
        record.insert("ts".into(), json!(crate::now_rfc3339()));
        record.insert("kind".into(), json!(kind));
        record.insert("prev".into(), json!(self.last_hash));
        let hash = record_hash(&record);
        record.insert("hash".into(), json!(hash));
        let mut line = serde_json::to_vec(&Value::Object(record)).unwrap_or_default();
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_error(&self.path))?;
        self.bytes += line.len() as u64;
        self.next_seq += 1;
        self.last_hash = hash;
        self.dirty = true;
        Ok(seq)
    }

    fn sync(&mut self) -> Result<(), AuditError> {
        if self.dirty {
            self.file.sync_data().map_err(io_error(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let number = segments(&self.path).iter().filter_map(|p| segment_number(&self.path, p)).max().unwrap_or(0) + 1;
        let rotated = PathBuf::from(format!("{}.{number}", self.path.display()));
        std::fs::rename(&self.path, &rotated).map_err(io_error(&self.path))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io_error(&self.path))?;
        self.bytes = 0;
        let mut body = Map::new();
        body.insert("previous_file".into(), json!(rotated.file_name().map(|n| n.to_string_lossy().into_owned())));
        self.write_record("rotated", body)?;
        Ok(())
    }
}

fn spawn_syncer(inner: Weak<Mutex<Writer>>, every: Duration) {
    let spawned = std::thread::Builder::new().name("audit-fsync".into()).spawn(move || loop {
        std::thread::sleep(every);
        let Some(inner) = inner.upgrade() else { return };
        let mut writer = inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writer.sync() {
            tracing::error!("audit log background sync failed: {e}");
        }
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the audit sync thread, records are synced only at close: {e}");
    }
}

/// `(next seq, hash)` after the last complete record of `bytes`, or `None` when there is none.
fn last_record(path: &Path, bytes: &[u8]) -> Result<Option<(u64, String)>, AuditError> {
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let Some(last) = lines.last() else { return Ok(None) };
    let broken = |message: &str| AuditError::Broken {
        path: path.to_owned(),
        line: lines.len(),
        seq: None,
        message: format!("{message}; refusing to append to a broken chain (run `hearken audit verify`)"),
    };
    let record: Map<String, Value> = serde_json::from_slice(last).map_err(|_| broken("last record is not JSON"))?;
    let seq = record.get("seq").and_then(Value::as_u64).ok_or_else(|| broken("last record has no seq"))?;
    let hash = record.get("hash").and_then(Value::as_str).ok_or_else(|| broken("last record has no hash"))?;
    Ok(Some((seq + 1, hash.to_owned())))
}

fn segment_number(active: &Path, candidate: &Path) -> Option<u64> {
    let active_name = active.file_name()?.to_string_lossy().into_owned();
    let name = candidate.file_name()?.to_string_lossy().into_owned();
    name.strip_prefix(&format!("{active_name}."))?.parse().ok()
}

/// The files of one log in chain order: rotated segments `<file>.1`, `<file>.2`, … then `<file>`.
pub fn segments(active: &Path) -> Vec<PathBuf> {
    let dir = active.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter_map(|p| segment_number(active, &p).map(|n| (n, dir.join(p.file_name().unwrap_or_default()))))
                .collect()
        })
        .unwrap_or_default();
    numbered.sort();
    let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
    if active.exists() {
        files.push(active.to_owned());
    }
    files
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verified {
    /// Files checked, in chain order.
    pub files: Vec<PathBuf>,
    /// Records checked.
    pub records: u64,
    /// Hash of the last record: compare with an anchor kept elsewhere.
    pub head: String,
    /// Commands whose outcome record is missing (a crash between publish and outcome).
    pub incomplete: Vec<u64>,
}

/// Verifies the whole chain of the log at `path`, rotated segments included.
/// Returns the first bad record as [`AuditError::Broken`].
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let files = segments(path);
    if files.is_empty() {
        return Err(io_error(path)(std::io::Error::new(std::io::ErrorKind::NotFound, "no such audit log")));
    }
    let mut expected_seq = 0u64;
    let mut expected_prev = GENESIS.to_owned();
    let mut pending_commands = std::collections::BTreeSet::new();
    let mut records = 0u64;
    let last_file = files.len() - 1;
    for (file_index, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).map_err(io_error(file))?;
        let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
        while let Some((index, line)) = lines.next() {
            let is_final_fragment = lines.peek().is_none();
            let line_no = index + 1;
            if is_final_fragment {
                if line.is_empty() {
                    break;
                }
                let where_ = if file_index == last_file { "torn last record" } else { "torn record in a rotated file" };
                return Err(AuditError::Broken {
                    path: file.clone(),
                    line: line_no,
                    seq: None,
                    message: format!("{where_} ({} bytes without a newline): an interrupted write", line.len()),
                });
            }
            let broken = |seq: Option<u64>, message: String| AuditError::Broken {
                path: file.clone(),
                line: line_no,
                seq,
                message,
            };
            let record: Map<String, Value> =
                serde_json::from_slice(line).map_err(|e| broken(None, format!("record is not a JSON object: {e}")))?;
            let seq = record.get("seq").and_then(Value::as_u64);
            let stored_hash = record.get("hash").and_then(Value::as_str).unwrap_or_default();
            if record_hash(&record) != stored_hash {
                return Err(broken(seq, format!("record seq {} was modified (hash mismatch)", show(seq))));
            }
            let Some(seq) = seq else { return Err(broken(None, "record has no seq".into())) };
            let first_of_lone_segment =
                records == 0 && seq > 0 && record.get("kind").and_then(Value::as_str) == Some("rotated");
            if first_of_lone_segment {
                // Verifying a rotated-away segment on its own: anchor at its first record.
                expected_seq = seq;
                expected_prev = record.get("prev").and_then(Value::as_str).unwrap_or_default().to_owned();
            }
            if seq != expected_seq {
                let why = if seq > expected_seq {
                    "records are missing before it"
                } else {
                    "records were reordered or inserted"
                };
                return Err(broken(
                    Some(seq),
                    format!("record seq {seq} where seq {expected_seq} was expected: {why}"),
                ));
            }
            if record.get("prev").and_then(Value::as_str) != Some(expected_prev.as_str()) {
                return Err(broken(
                    Some(seq),
                    format!("record seq {seq} does not chain to the record before it (prev mismatch)"),
                ));
            }
            match record.get("kind").and_then(Value::as_str) {
                Some("command") => {
                    pending_commands.insert(seq);
                }
                Some("outcome") => {
                    if let Some(reference) = record.get("ref").and_then(Value::as_u64) {
                        pending_commands.remove(&reference);
                    }
                }
                _ => {}
            }
            expected_prev = stored_hash.to_owned();
            expected_seq = seq + 1;
            records += 1;
        }
    }
    Ok(Verified { files, records, head: expected_prev, incomplete: pending_commands.into_iter().collect() })
}

fn show(seq: Option<u64>) -> String {
    seq.map_or_else(|| "?".to_owned(), |s| s.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn body(n: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("n".into(), json!(n));
        m
    }

    fn write(dir: &Path, count: u64) -> PathBuf {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path, AuditOptions { fsync: FsyncPolicy::Never, max_bytes: None }).unwrap();
        for n in 0..count {
            log.append("note", body(n)).unwrap();
        }
        path
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    fn broken_seq(path: &Path) -> (usize, Option<u64>, String) {
        match verify(path) {
            Err(AuditError::Broken { line, seq, message, .. }) => (line, seq, message),
            other => panic!("expected a broken log, got {other:?}"),
        }
    }

    #[test]
    fn intact_log_verifies_and_reopens_continuing_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 3);
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        assert_eq!(log.append("note", body(9)).unwrap(), 3);
        drop(log);
        let report = verify(&path).unwrap();
        assert_eq!(report.records, 4);
    }

    #[test]
    fn edited_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 5);
        let mut l = lines(&path);
        l[2] = l[2].replace("\"n\":2", "\"n\":7");
        rewrite(&path, &l);
        let (line, seq, message) = broken_seq(&path);
        assert_eq!((line, seq), (3, Some(2)));
        assert!(message.contains("modified"), "{message}");
    }

    #[test]
    fn deleted_reordered_and_inserted_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 5);
        let original = lines(&path);

        let mut deleted = original.clone();
        deleted.remove(1);
        rewrite(&path, &deleted);
        assert_eq!(broken_seq(&path).1, Some(2));

        let mut reordered = original.clone();
        reordered.swap(1, 2);
        rewrite(&path, &reordered);
        assert_eq!(broken_seq(&path).1, Some(2));

        let mut inserted = original.clone();
        inserted.insert(3, original[1].clone());
        rewrite(&path, &inserted);
        assert_eq!(broken_seq(&path).0, 4);

        let mut truncated_head = original;
        truncated_head.remove(0);
        rewrite(&path, &truncated_head);
        assert_eq!(broken_seq(&path).1, Some(1));
    }

    #[test]
    fn torn_tail_is_reported_then_recovered_into_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"seq":2,"ts":"2026"#);
        std::fs::write(&path, &bytes).unwrap();
        let (line, _, message) = broken_seq(&path);
        assert_eq!(line, 3);
        assert!(message.contains("torn"), "{message}");

        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        drop(log);
        let report = verify(&path).unwrap();
        assert_eq!(report.records, 3);
        let last = lines(&path).pop().unwrap();
        assert!(last.contains("recovered_torn_tail") && last.contains(r#"{\"seq\":2,\"ts\":\"2026"#), "{last}");
        let saved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("torn-"))
            .collect();
        assert_eq!(saved.len(), 1);
    }

    #[test]
    fn rotation_keeps_the_chain_and_a_missing_segment_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, AuditOptions { fsync: FsyncPolicy::Never, max_bytes: Some(600) }).unwrap();
        for n in 0..20 {
            log.append("note", body(n)).unwrap();
        }
        drop(log);
        let report = verify(&path).unwrap();
        assert!(report.files.len() >= 3, "{:?}", report.files);
        assert!(report.records > 20);

        let log = AuditLog::open(&path, AuditOptions { fsync: FsyncPolicy::Never, max_bytes: Some(600) }).unwrap();
        log.append("note", body(99)).unwrap();
        drop(log);
        assert!(verify(&path).is_ok());

        std::fs::remove_file(dir.path().join("audit.jsonl.2")).unwrap();
        let (_, _, message) = broken_seq(&path);
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn opening_a_log_with_an_unreadable_last_record_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 2);
        let mut l = lines(&path);
        l[1] = "garbage".into();
        rewrite(&path, &l);
        assert!(AuditLog::open(&path, AuditOptions::default()).is_err());
    }

    #[test]
    fn missing_outcome_is_listed_as_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
        let a = log.append("command", Map::new()).unwrap();
        let b = log.append("command", Map::new()).unwrap();
        let mut outcome = Map::new();
        outcome.insert("ref".into(), json!(a));
        log.append("outcome", outcome).unwrap();
        drop(log);
        assert_eq!(verify(&path).unwrap().incomplete, vec![b]);
    }
}
