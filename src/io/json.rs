//! JSON files: pretty, atomic writes and reads whose errors name the file, line and column.

use super::atomic::atomic_write;
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Reads and parses a JSON file. A missing or unreadable file is an [`Error::Io`] naming
/// it; invalid JSON or a value of the wrong form is an [`Error::BadFile`] naming the file,
/// line and column.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "invalid JSON",
            _ => "unexpected contents",
        };
        Error::bad_file(path, format!("{what} at line {}, column {}: {}", e.line(), e.column(), strip_position(&e)))
    })
}

/// Writes `value` as pretty-printed JSON with a trailing newline, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::bad_file(path, format!("cannot serialize to JSON: {e}")))?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// serde_json's message without its trailing " at line L column C" (reported separately).
fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
