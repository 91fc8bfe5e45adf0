//! metrics.jsonl: one JSON object per logged step, appended and flushed as training goes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// An append-only metrics log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens the log for appending after dropping every record past `keep_until_step` (so a
    /// resumed run's log reads as if it had never stopped).
    pub fn open(path: &Path, keep_until_step: u64) -> Result<Self> {
        if path.exists() {
            let kept: Vec<String> = read_records(path)?
                .into_iter()
                .filter(|v| v.get("step").and_then(Value::as_u64).is_some_and(|s| s <= keep_until_step))
                .map(|v| v.to_string())
                .collect();
            let mut text = kept.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            crate::io::atomic_write(path, text.as_bytes())?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// Appends one record and flushes it.
    ///
    /// The record and its newline go out in one `write` call on an append-mode file, so a
    /// kill can tear only the last line (which [`read_records`] then skips).
    pub fn write(&mut self, record: &Value) -> Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file.write_all(line.as_bytes()).and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }

    /// Forces the records written so far to disk (called before each checkpoint, so every
    /// record a checkpoint covers survives a power loss along with it).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Every record of a metrics file; a torn last line (from a kill mid-write) is skipped,
/// any other bad line is an error naming its line number.
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file).lines().collect::<std::io::Result<_>>().map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err(Error::bad_file(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}
