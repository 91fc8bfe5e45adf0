//! Reading training text: a file, a folder of files, or the built-in word list.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Reads a corpus: the file at `path`, or every regular file directly inside the folder at
/// `path` (not recursive; names starting with `.` are skipped; symbolic links are followed)
/// concatenated in sorted file-name order, with a newline added after a file that does not
/// end with one so that two files never share a line.
///
/// Each file must be UTF-8 (a leading byte-order mark is dropped); a file that is not, or
/// that contains a NUL byte (a binary file), is an [`Error::BadFile`] naming the file and the
/// byte offset of the first bad byte. CRLF line ends become LF (a lone CR is kept). A file
/// with no text or only whitespace is an error; inside a folder such files are skipped, and
/// the folder is an error only when no file has text.
pub fn read_corpus(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        let text = read_text_file(path)?;
        if text.trim().is_empty() {
            return Err(Error::bad_file(path, "the corpus file is empty (no text)"));
        }
        return Ok(text);
    }
    let files = folder_files(path)?;
    if files.is_empty() {
        return Err(Error::bad_file(path, "the corpus folder has no regular files"));
    }
    let mut corpus = String::new();
    for file in &files {
        let text = read_text_file(file)?;
        if text.trim().is_empty() {
            continue;
        }
        corpus.push_str(&text);
        if !corpus.ends_with('\n') {
            corpus.push('\n');
        }
    }
    if corpus.is_empty() {
        return Err(Error::bad_file(path, format!("all {} files of the corpus folder are empty (no text)", files.len())));
    }
    Ok(corpus)
}

/// The regular, non-hidden files directly inside `dir`, sorted by name.
fn folder_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_file = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.is_file();
        if is_file && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one file as UTF-8 text without a BOM, with LF line ends.
fn read_text_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_text(bytes).map_err(|msg| Error::bad_file(path, msg))
}

/// Validates and cleans file content; the error message gives the byte offset of the problem
/// in the original bytes.
fn decode_text(mut bytes: Vec<u8>) -> std::result::Result<String, String> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let skipped = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    bytes.drain(..skipped);
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("contains a NUL byte at byte offset {}: a binary file, not text", pos + skipped));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let pos = e.utf8_error().valid_up_to() + skipped;
        format!("not valid UTF-8 at byte offset {pos} (a binary file, or another text encoding)")
    })?;
    Ok(if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text })
}

/// The built-in corpus for a run without data: the English word list of the
/// [`random_word`](https://crates.io/crates/random_word) crate, version 0.5 (feature `en`,
/// MIT licence), compiled into the binary, one word per line in the crate's order.
pub fn builtin_corpus() -> String {
    let words = random_word::all(random_word::Lang::En);
    let mut text = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
    for word in words {
        text.push_str(word);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::decode_text;

    #[test]
    fn decode_cleans_and_reports_offsets() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFab\r\ncd\r".to_vec()).unwrap(), "ab\ncd\r");
        let err = decode_text(b"\xEF\xBB\xBFabc\xFFdef".to_vec()).unwrap_err();
        assert!(err.contains("byte offset 6"), "{err}");
        let err = decode_text(b"ab\0cd".to_vec()).unwrap_err();
        assert!(err.contains("NUL byte at byte offset 2"), "{err}");
    }
}
