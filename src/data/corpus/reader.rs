//! Reading a corpus in blocks of whole lines with bounded memory: each file in turn, UTF-8
//! checked (errors name the file and byte offset), a leading byte-order mark dropped, CRLF
//! turned into LF, and each file's size and content hash taken on the way.

use std::io::Read;

use xxhash_rust::xxh3::Xxh3;

use super::source::{FileFingerprint, SourceFile, SourceFingerprint, SourceOptions};
use crate::{Error, Result};

/// Bytes read from a file at a time.
const READ_BYTES: usize = 4 << 20;

/// One block of text: whole lines of one file (the last block of a file may end without a
/// newline).
pub struct Block {
    /// Index of the file in the source list.
    pub file: usize,
    /// 1-based number of the block's first line in its file.
    pub first_line: usize,
    pub text: String,
    /// Whether this is the file's last block.
    pub last_of_file: bool,
    /// Raw bytes read from the file for this block (a byte-order mark and CRs included), for
    /// progress: a file's blocks add up to its size.
    pub bytes_read: u64,
}

/// A corpus's text as [`Block`]s in reading order: each file of a source list in turn (or
/// text in memory, as one block), every file's fingerprint taken on the way
/// ([`Blocks::fingerprint`]). Stops after the first error.
pub struct Blocks<'a> {
    from: Origin<'a>,
    /// Set after an error or the last block.
    done: bool,
}

enum Origin<'a> {
    Files {
        files: &'a [SourceFile],
        opts: SourceOptions,
        /// The file being read, and the index of the next one to open.
        current: Option<Box<OpenFile>>,
        next: usize,
        prints: Vec<FileFingerprint>,
        buf: Vec<u8>,
    },
    Text {
        name: &'a str,
        text: &'a str,
    },
}

impl<'a> Blocks<'a> {
    /// The blocks of `files`, read in order.
    pub fn files(files: &'a [SourceFile], opts: &SourceOptions) -> Self {
        let from = Origin::Files { files, opts: *opts, current: None, next: 0, prints: Vec::with_capacity(files.len()), buf: Vec::new() };
        Blocks { from, done: false }
    }

    /// `text` (a corpus that is not on disk, such as the built-in word list) as one block of
    /// file 0, fingerprinted under `name`.
    pub fn text(name: &'a str, text: &'a str) -> Self {
        Blocks { from: Origin::Text { name, text }, done: false }
    }

    /// The fingerprint of what was read: every file's size and content hash (complete once
    /// the blocks are exhausted), or the text's.
    pub fn fingerprint(&self) -> SourceFingerprint {
        match &self.from {
            Origin::Files { prints, .. } => SourceFingerprint { files: prints.clone() },
            Origin::Text { name, text } => SourceFingerprint::of_text(name, text),
        }
    }

    fn next_block(&mut self) -> Result<Option<Block>> {
        let (files, opts, current, next, prints, buf) = match &mut self.from {
            Origin::Text { text, .. } => {
                self.done = true;
                return Ok(Some(Block { file: 0, first_line: 1, text: text.to_string(), last_of_file: true, bytes_read: text.len() as u64 }));
            }
            Origin::Files { files, opts, current, next, prints, buf } => (files, opts, current, next, prints, buf),
        };
        let file = match current {
            Some(file) => file,
            None => {
                let Some(source) = files.get(*next) else {
                    self.done = true;
                    return Ok(None);
                };
                buf.resize(READ_BYTES, 0);
                *next += 1;
                current.insert(Box::new(OpenFile::open(*next - 1, source, opts)?))
            }
        };
        let block = file.read_block(buf)?;
        if block.last_of_file {
            if let Some(file) = current.take() {
                prints.push((*file).fingerprint());
            }
        }
        Ok(Some(block))
    }
}

impl Iterator for Blocks<'_> {
    type Item = Result<Block>;

    fn next(&mut self) -> Option<Result<Block>> {
        if self.done {
            return None;
        }
        let block = self.next_block();
        self.done |= block.is_err();
        block.transpose()
    }
}

/// A file being read: its handle, the bytes after its last whole line, and its size and hash
/// so far.
struct OpenFile {
    index: usize,
    source: SourceFile,
    file: std::fs::File,
    modified: Option<u64>,
    /// The most bytes it may hold (non-regular files).
    limit: u64,
    hasher: Xxh3,
    pending: Vec<u8>,
    total: u64,
    /// Number of the next block's first line, and bytes handed out in blocks so far.
    line: usize,
    consumed: u64,
}

impl OpenFile {
    fn open(index: usize, source: &SourceFile, opts: &SourceOptions) -> Result<Self> {
        let file = open(source)?;
        let meta = file.metadata().map_err(|e| Error::io(&source.path, e))?;
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
        let limit = if source.regular { u64::MAX } else { opts.special_file_limit };
        Ok(OpenFile { index, source: source.clone(), file, modified, limit, hasher: Xxh3::new(), pending: Vec::new(), total: 0, line: 1, consumed: 0 })
    }

    /// Reads until a whole line (or the end of the file) is there and returns the lines read.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<Block> {
        let path = &self.source.path;
        let mut bytes_read = 0;
        loop {
            let n = match self.file.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0, // a FIFO with nothing to read
                Err(e) => return Err(Error::io(path, e)),
            };
            self.total += n as u64;
            if self.total > self.limit {
                let limit = self.limit;
                return Err(Error::bad_file(path, format!("is not a regular file and holds more than data.special_file_limit = {limit} bytes")));
            }
            self.hasher.update(&buf[..n]);
            bytes_read += n as u64;
            self.pending.extend_from_slice(&buf[..n]);
            let eof = n == 0;
            // Hand out the whole lines read so far (everything at the end of the file).
            let cut = if eof { self.pending.len() } else { self.pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
            if cut > 0 || eof {
                let rest = self.pending.split_off(cut);
                let bytes = std::mem::replace(&mut self.pending, rest);
                let text = decode(bytes, self.consumed).map_err(|msg| Error::bad_file(path, msg))?;
                self.consumed += cut as u64;
                let first_line = self.line;
                self.line += count_newlines(&text);
                return Ok(Block { file: self.index, first_line, text, last_of_file: eof, bytes_read });
            }
        }
    }

    /// What was read of the file, once it is read to its end.
    fn fingerprint(self) -> FileFingerprint {
        FileFingerprint { name: self.source.name, size: self.total, modified: self.modified, xxh3: format!("{:016x}", self.hasher.digest()) }
    }
}

/// The fingerprint of `files` (sizes and content hashes), reading each once in blocks
/// without keeping it.
pub fn fingerprint_files(files: &[SourceFile], opts: &SourceOptions) -> Result<SourceFingerprint> {
    let mut blocks = Blocks::files(files, opts);
    for block in blocks.by_ref() {
        block?;
    }
    Ok(blocks.fingerprint())
}

/// Number of `\n` in `text` (a byte count that vectorises, unlike `str::matches`).
pub(crate) fn count_newlines(text: &str) -> usize {
    text.as_bytes().iter().filter(|&&b| b == b'\n').count()
}

fn open(file: &SourceFile) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    if !file.regular {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO without a writer would block the open itself.
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(&file.path).map_err(|e| Error::io(&file.path, e))
}

/// Validates and cleans one block of a file that starts `offset` bytes into it: a
/// byte-order mark at the file's start is dropped, CRLF becomes LF; the error gives the byte
/// offset of a NUL or of invalid UTF-8 in the file.
fn decode(mut bytes: Vec<u8>, offset: u64) -> std::result::Result<String, String> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let skipped = if offset == 0 && bytes.starts_with(BOM) { BOM.len() } else { 0 };
    bytes.drain(..skipped);
    let at = |pos: usize| offset + (pos + skipped) as u64;
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("contains a NUL byte at byte offset {}: a binary file, not text", at(pos)));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 at byte offset {} (a binary file, or another text encoding)", at(e.utf8_error().valid_up_to())))?;
    Ok(if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text })
}

#[cfg(test)]
mod tests {
    use super::super::source::list_sources;
    use super::*;

    #[test]
    fn blocks_hold_whole_lines_and_errors_give_file_offsets() {
        assert_eq!(decode(b"\xEF\xBB\xBFab\r\ncd\r".to_vec(), 0).unwrap(), "ab\ncd\r");
        assert_eq!(decode(b"\xEF\xBB\xBFab".to_vec(), 10).unwrap(), "\u{feff}ab", "a BOM counts only at the start");
        let err = decode(b"abc\xFFdef".to_vec(), 100).unwrap_err();
        assert!(err.contains("byte offset 103"), "{err}");
        let err = decode(b"ab\0cd".to_vec(), 0).unwrap_err();
        assert!(err.contains("NUL byte at byte offset 2"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let text: String = (0..600_000).map(|i| format!("line {i}\r\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let files = list_sources(&path, &SourceOptions::default()).unwrap();
        let (mut blocks, mut bytes) = (Vec::new(), 0);
        let mut reader = Blocks::files(&files, &SourceOptions::default());
        for b in reader.by_ref() {
            let b = b.unwrap();
            assert!(b.text.ends_with('\n') || b.last_of_file);
            bytes += b.bytes_read;
            blocks.push((b.first_line, b.text));
        }
        let prints = reader.fingerprint().files;
        assert!(blocks.len() > 2, "several blocks");
        for pair in blocks.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + pair[0].1.matches('\n').count(), "line numbers count on");
        }
        let joined: String = blocks.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(joined, text.replace("\r\n", "\n"));
        assert_eq!((bytes, prints[0].size), (text.len() as u64, text.len() as u64));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn special_files_are_read_up_to_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO without a writer reads as empty instead of blocking.
        let opts = SourceOptions { allow_special_files: true, special_file_limit: 1000 };
        let files = list_sources(&fifo, &opts).unwrap();
        assert_eq!(fingerprint_files(&files, &opts).unwrap().files[0].size, 0);
        // /dev/zero never ends: the limit stops it.
        let zero = list_sources(std::path::Path::new("/dev/zero"), &opts).unwrap();
        let err = fingerprint_files(&zero, &opts).unwrap_err().to_string();
        assert!(err.contains("/dev/zero") && err.contains("1000 bytes"), "{err}");
    }
}
