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
}

/// Reads the files in order and hands out [`Block`]s to `each`; returns every file's
/// fingerprint. `on_bytes` hears how many raw bytes were read after each read.
pub fn read_blocks(
    files: &[SourceFile],
    opts: &SourceOptions,
    mut each: impl FnMut(Block) -> Result<()>,
    mut on_bytes: impl FnMut(u64),
) -> Result<Vec<FileFingerprint>> {
    let mut prints = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let path = &file.path;
        let mut f = open(file)?;
        let meta = f.metadata().map_err(|e| Error::io(path, e))?;
        let limit = if file.regular { u64::MAX } else { opts.special_file_limit };
        let mut hasher = Xxh3::new();
        let (mut pending, mut total, mut line, mut consumed) = (Vec::<u8>::new(), 0u64, 1usize, 0u64);
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            let n = match f.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0, // a FIFO with nothing to read
                Err(e) => return Err(Error::io(path, e)),
            };
            total += n as u64;
            if total > limit {
                return Err(Error::bad_file(path, format!("is not a regular file and holds more than data.special_file_limit = {limit} bytes")));
            }
            hasher.update(&buf[..n]);
            on_bytes(n as u64);
            pending.extend_from_slice(&buf[..n]);
            let eof = n == 0;
            // Hand out the whole lines read so far (everything at the end of the file).
            let cut = if eof { pending.len() } else { pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
            if cut > 0 || eof {
                let rest = pending.split_off(cut);
                let bytes = std::mem::replace(&mut pending, rest);
                let text = decode(bytes, consumed).map_err(|msg| Error::bad_file(path, msg))?;
                consumed += cut as u64;
                let lines = count_newlines(&text);
                each(Block { file: index, first_line: line, text, last_of_file: eof })?;
                line += lines;
            }
            if eof {
                break;
            }
        }
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs());
        prints.push(FileFingerprint { name: file.name.clone(), size: total, modified, xxh3: format!("{:016x}", hasher.digest()) });
    }
    Ok(prints)
}

/// The fingerprint of `files` (sizes and content hashes), reading each once in blocks
/// without keeping it.
pub fn fingerprint_files(files: &[SourceFile], opts: &SourceOptions) -> Result<SourceFingerprint> {
    let files = read_blocks(files, opts, |_| Ok(()), |_| {})?;
    Ok(SourceFingerprint { files })
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
        let prints = read_blocks(
            &files,
            &SourceOptions::default(),
            |b| {
                assert!(b.text.ends_with('\n') || b.last_of_file);
                blocks.push((b.first_line, b.text));
                Ok(())
            },
            |n| bytes += n,
        )
        .unwrap();
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
