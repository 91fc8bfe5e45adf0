//! Where a corpus comes from: the files of a `--data` path (one file, or a folder walked
//! recursively in sorted order), and the [`SourceFingerprint`] (sizes and content hashes,
//! computed by the reader on the way) a run records so that `--resume` and `eval` notice a changed corpus.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::names::{corpus_state, CorpusState};
use crate::{Error, Result};

/// How a corpus may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// Read FIFOs, character devices and other non-regular files (never without this: a FIFO
    /// without a writer blocks and `/dev/zero` never ends).
    pub allow_special_files: bool,
    /// The most bytes read from one non-regular file; more is an error.
    pub special_file_limit: u64,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions { allow_special_files: false, special_file_limit: 1 << 30 }
    }
}

/// One file of a corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    /// Its path relative to the corpus folder (`""` for a single-file corpus), `/`-separated.
    pub name: String,
    /// Whether it is a regular file (others need [`SourceOptions::allow_special_files`]).
    pub regular: bool,
}

/// What a run remembers of one corpus file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// Path relative to the corpus folder (`""` for a single-file corpus).
    pub name: String,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch (informational: a touched but
    /// unchanged file is the same corpus).
    pub modified: Option<u64>,
    /// XXH3-64 of the file's bytes, hex.
    pub xxh3: String,
}

/// The files of a corpus, in reading order, with their sizes and content hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFingerprint {
    pub files: Vec<FileFingerprint>,
}

impl SourceFingerprint {
    /// The fingerprint of a corpus that is not on disk (the built-in word list), from its text.
    pub fn of_text(name: &str, text: &str) -> Self {
        let xxh3 = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()));
        SourceFingerprint { files: vec![FileFingerprint { name: name.to_string(), size: text.len() as u64, modified: None, xxh3 }] }
    }

    /// How `now` differs from `self` (the corpus a run was trained on), in words; `None` when
    /// every file has the same name, size and content.
    pub fn differences(&self, now: &SourceFingerprint) -> Option<String> {
        let mut notes = Vec::new();
        for old in &self.files {
            let shown = if old.name.is_empty() { "the data file".to_string() } else { format!("`{}`", old.name) };
            match now.files.iter().find(|f| f.name == old.name) {
                None => notes.push(format!("{shown} is gone")),
                Some(new) if new.size != old.size => notes.push(format!("{shown} is {} bytes, was {}", new.size, old.size)),
                Some(new) if new.xxh3 != old.xxh3 => notes.push(format!("{shown} has other content (same size)")),
                Some(_) => {}
            }
        }
        for new in now.files.iter().filter(|f| !self.files.iter().any(|o| o.name == f.name)) {
            notes.push(format!("`{}` is new", new.name));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// The files of the corpus at `path`: the file itself, or every non-hidden file under the
/// folder (recursively, symbolic links followed, sorted by relative path). Non-regular files
/// are refused unless `opts` allows them.
pub fn list_sources(path: &Path, opts: &SourceOptions) -> Result<Vec<SourceFile>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        check_kind(path, &meta, opts)?;
        return Ok(vec![SourceFile { path: path.to_path_buf(), name: String::new(), regular: meta.is_file() }]);
    }
    let mut files = Vec::new();
    walk(path, path, opts, &mut files, 0)?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Folders nested deeper than this are an error (a symbolic link pointing to its own parent
/// would otherwise be walked forever).
const MAX_DEPTH: usize = 64;

fn walk(root: &Path, dir: &Path, opts: &SourceOptions, out: &mut Vec<SourceFile>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::bad_file(dir, format!("folders nested more than {MAX_DEPTH} deep (a symbolic link loop?)")));
    }
    match corpus_state(dir) {
        CorpusState::Finished => return Err(Error::bad_file(dir, "is a prepared corpus, not text: give it to `convlm train --data` as it is")),
        CorpusState::Unfinished => {
            return Err(Error::bad_file(
                dir,
                "holds token files without a corpus.json: a `convlm prepare` into it did not finish; run it again with this folder as --out",
            ))
        }
        CorpusState::NotACorpus => {}
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, opts, out, depth + 1)?;
            continue;
        }
        check_kind(&path, &meta, opts)?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let name = rel.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/");
        out.push(SourceFile { path, name, regular: meta.is_file() });
    }
    Ok(())
}

fn check_kind(path: &Path, meta: &std::fs::Metadata, opts: &SourceOptions) -> Result<()> {
    if meta.is_file() || opts.allow_special_files {
        return Ok(());
    }
    Err(Error::bad_file(
        path,
        format!(
            "is not a regular file ({}): convlm reads regular files and folders (set data.allow_special_files = true to read it, up to data.special_file_limit bytes)",
            kind_name(meta)
        ),
    ))
}

#[cfg(unix)]
fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn kind_name(_meta: &std::fs::Metadata) -> &'static str {
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_recursively_in_name_order_and_hidden_entries_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("b.txt", "b"), ("a/z.txt", "z"), ("a/b/c.txt", "c"), (".hidden/x.txt", "x"), ("a/.y", "y")] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let names: Vec<String> = list_sources(dir.path(), &SourceOptions::default()).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["a/b/c.txt", "a/z.txt", "b.txt"]);
    }

    #[test]
    fn fingerprints_tell_what_changed() {
        let a = SourceFingerprint::of_text("x", "hello");
        assert_eq!(a.differences(&SourceFingerprint::of_text("x", "hello")), None);
        assert_eq!(a.differences(&SourceFingerprint::of_text("x", "hellO")).unwrap(), "`x` has other content (same size)");
        assert_eq!(a.differences(&SourceFingerprint::of_text("x", "hello!")).unwrap(), "`x` is 6 bytes, was 5");
        assert_eq!(a.differences(&SourceFingerprint::of_text("y", "hello")).unwrap(), "`x` is gone; `y` is new");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn special_files_are_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = list_sources(&fifo, &SourceOptions::default()).unwrap_err().to_string();
        assert!(err.contains("pipe") && err.contains("a FIFO") && err.contains("data.allow_special_files"), "{err}");
        let opts = SourceOptions { allow_special_files: true, special_file_limit: 1000 };
        assert_eq!(list_sources(&fifo, &opts).unwrap(), [SourceFile { path: fifo.clone(), name: String::new(), regular: false }]);
    }
}
