//! metrics.jsonl: one JSON object per logged step, appended in batches as training goes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

/// An append-only metrics log. Records are collected and written in batches (a `write`
/// system call per step cost more than a small model's step); [`MetricsLog::sync`] writes
/// and syncs them, and nothing waits more than [`FLUSH_EVERY`] to reach the file.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    /// Whole lines not yet written.
    pending: String,
    last_flush: Instant,
}

/// The longest a record waits in memory.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Pending bytes that are written at once.
const FLUSH_BYTES: usize = 64 << 10;

impl MetricsLog {
    /// Opens the log for appending after dropping every record past `keep_until_step` (so a
    /// resumed run's log reads as if it had never stopped).
    pub fn open(path: &Path, keep_until_step: u64) -> Result<Self> {
        if path.exists() {
            // The kept lines as they were written, not re-serialised: a float parsed and printed
            // again may change in its last digit.
            let kept: Vec<String> = read_lines_strict(path)?
                .into_iter()
                .filter(|(_, v)| v.get("step").and_then(Value::as_u64).is_some_and(|s| s <= keep_until_step))
                .map(|(text, _)| text)
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::io::atomic_write(path, text.as_bytes())?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog { path: path.to_path_buf(), file, pending: String::new(), last_flush: Instant::now() })
    }

    /// Appends one record (written with the next batch).
    pub fn write(&mut self, record: &Value) -> Result<()> {
        self.pending.push_str(&record.to_string());
        self.pending.push('\n');
        if self.pending.len() >= FLUSH_BYTES || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending records: whole lines, in one `write` call on an append-mode file,
    /// so a kill can tear only the last line (which [`read_records`] then skips).
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(self.pending.as_bytes()).and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the pending records and forces them to disk (called before each checkpoint,
    /// so every record a checkpoint covers survives a power loss along with it).
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for MetricsLog {
    /// Writes what is pending (an error here has nowhere to go: [`MetricsLog::sync`] reports
    /// it where it matters, before checkpoints).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Every record of a metrics file; a torn last line (from a kill mid-write) is skipped,
/// any other bad line is an error naming its line number (a resumed run rewrites the log, and
/// must not drop a line it cannot read).
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    Ok(read_lines_strict(path)?.into_iter().map(|(_, v)| v).collect())
}

/// [`read_lines`]' records, each with its line's text; a bad line but a torn last one is an
/// error naming its line number.
fn read_lines_strict(path: &Path) -> Result<Vec<(String, Value)>> {
    let (records, bad) = read_lines(path)?;
    match bad.into_iter().next() {
        Some((line, e)) => Err(Error::bad_file(path, format!("line {line}: {e}"))),
        None => Ok(records),
    }
}

/// Every readable record of a metrics file, for readers that only look (plots): a torn last
/// line is skipped silently, another bad line is skipped and described in the second list
/// (`line 4: …`).
pub fn read_records_skipping(path: &Path) -> Result<(Vec<Value>, Vec<String>)> {
    let (records, bad) = read_lines(path)?;
    Ok((
        records.into_iter().map(|(_, v)| v).collect(),
        bad.into_iter().map(|(line, e)| format!("{}: line {line} is not a JSON record ({e}); skipped", path.display())).collect(),
    ))
}

/// Lines that are not JSON records: (1-based line number, the parser's error).
type BadLines = Vec<(usize, serde_json::Error)>;

/// The records, each with its line's text, and the bad lines but a torn last one.
fn read_lines(path: &Path) -> Result<(Vec<(String, Value)>, BadLines)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file).lines().collect::<std::io::Result<_>>().map_err(|e| Error::io(path, e))?;
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let last = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(v) => out.push((line, v)),
            Err(_) if i + 1 == last => {}
            Err(e) => bad.push((i + 1, e)),
        }
    }
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_keeps_its_lines_as_written_and_drops_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // Spacing, key order and float spellings that re-serialising would change.
        let kept = ["{\"step\": 1, \"loss\": 4.1000000000000001, \"lr\": 1E-3}", "{\"val_loss\":2.5e0,\"step\":2}"];
        let text = format!("{}\n{}\n{{\"step\":3,\"loss\":3.9}}\n{{\"step\":4,\"lo", kept[0], kept[1]);
        std::fs::write(&path, text).unwrap();
        let mut log = MetricsLog::open(&path, 2).unwrap();
        log.write(&serde_json::json!({"step": 3, "loss": 3.5})).unwrap();
        drop(log);
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(after, format!("{}\n{}\n{{\"loss\":3.5,\"step\":3}}\n", kept[0], kept[1]));
        assert_eq!(read_records(&path).unwrap().len(), 3);
    }

    #[test]
    fn a_bad_line_before_the_last_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1}\nnot json\n{\"step\":2}\n").unwrap();
        let err = MetricsLog::open(&path, 5).err().unwrap().to_string();
        assert!(err.contains("metrics.jsonl") && err.contains("line 2"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"step\":1}\nnot json\n{\"step\":2}\n", "nothing rewritten");
    }
}
