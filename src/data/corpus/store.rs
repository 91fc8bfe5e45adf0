//! [`TokenStore`]: the tokens of a corpus as one flat sequence of ids plus document
//! boundaries (lines, for line and grid data), held in memory or read from a prepared
//! corpus's files. Datasets read windows and documents from it without copying the corpus.
//!
//! The ids of a prepared corpus are read with positioned reads (`pread`) into the caller's
//! buffer, not mapped: a mapped file's pages count in the process's resident memory once
//! touched, and right after `convlm prepare` the kernel maps whole large folios of the cached
//! file on each random window, so a 2 GB `tokens.bin` showed as 1.7 GB of resident memory
//! (docs/corpus-format.md, "Memory"). Read, the pages stay in the page cache alone.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::Mmap;

/// How the ids are held.
#[derive(Debug)]
enum Ids {
    Owned(Vec<u32>),
    /// Little-endian u16 or u32 ids in a file, read where asked.
    File {
        file: File,
        wide: bool,
    },
}

/// Document boundaries: `n + 1` offsets into the ids, the first 0 and the last the length.
#[derive(Debug)]
enum Offsets {
    Owned(Vec<u64>),
    /// Little-endian u64 offsets in a mapped file.
    Mapped(Mmap),
}

/// The tokens of a corpus; see the module documentation.
#[derive(Debug)]
pub struct TokenStore {
    ids: Ids,
    docs: Option<Offsets>,
    len: usize,
    /// The file the ids are read from, for errors about its contents.
    path: Option<PathBuf>,
    /// The first error reading the file (truncated or failing under us), until
    /// [`TokenStore::take_read_error`]: the ids it could not read are `u32::MAX`, which no
    /// vocabulary holds, so `Dataset::check_batch` stops the batch and reports this error.
    read_error: Mutex<Option<std::io::Error>>,
}

impl TokenStore {
    /// A store in memory: `ids`, and for documents (lines) their `n + 1` boundary offsets.
    pub fn owned(ids: Vec<u32>, docs: Option<Vec<u64>>) -> Self {
        let len = ids.len();
        TokenStore { ids: Ids::Owned(ids), docs: docs.map(Offsets::Owned), len, path: None, read_error: Mutex::new(None) }
    }

    /// A store over files whose sizes the caller has checked: `ids` (opened from `path`) holds
    /// `len` values of 2 (`wide` false) or 4 bytes, `docs` (mapped) whole u64 offsets.
    pub(crate) fn file(ids: File, wide: bool, len: usize, docs: Option<Mmap>, path: &Path) -> Self {
        let (ids, docs) = (Ids::File { file: ids, wide }, docs.map(Offsets::Mapped));
        TokenStore { ids, docs, len, path: Some(path.to_path_buf()), read_error: Mutex::new(None) }
    }

    /// The file the ids are read from (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store holds no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the ids of `range` to `out`. Ids a file could not give are `u32::MAX`, and the
    /// error waits in [`TokenStore::take_read_error`].
    ///
    /// # Panics
    /// If `range` is out of bounds (datasets only ask for ranges they built from the store).
    pub fn read_into(&self, range: Range<usize>, out: &mut Vec<u32>) {
        assert!(range.start <= range.end && range.end <= self.len, "token range {range:?} outside a store of {}", self.len);
        let (file, width) = match &self.ids {
            Ids::Owned(v) => return out.extend_from_slice(&v[range]),
            Ids::File { file, wide } => (file, if *wide { 4 } else { 2 }),
        };
        let mut bytes = vec![0u8; range.len() * width];
        if let Err(e) = read_exact_at(file, &mut bytes, (range.start * width) as u64) {
            let mut slot = self.read_error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
            out.resize(out.len() + range.len(), u32::MAX);
            return;
        }
        match width {
            2 => out.extend(bytes.chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))),
            _ => out.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }

    /// The first error reading the ids' file since the last call, if any.
    pub fn take_read_error(&self) -> Option<std::io::Error> {
        self.read_error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The ids of `range` as a new vector.
    pub fn read(&self, range: Range<usize>) -> Vec<u32> {
        let mut out = Vec::with_capacity(range.len());
        self.read_into(range, &mut out);
        out
    }

    /// Number of documents (0 for a store without boundaries).
    pub fn num_docs(&self) -> usize {
        match &self.docs {
            None => 0,
            Some(Offsets::Owned(v)) => v.len().saturating_sub(1),
            Some(Offsets::Mapped(m)) => (m.len() / 8).saturating_sub(1),
        }
    }

    /// The token range of document `i`.
    ///
    /// # Panics
    /// If `i >= num_docs()`.
    pub fn doc(&self, i: usize) -> Range<usize> {
        let offset = |j: usize| -> usize {
            let v = match &self.docs {
                Some(Offsets::Owned(v)) => v[j],
                Some(Offsets::Mapped(m)) => u64::from_le_bytes(m[8 * j..8 * j + 8].try_into().unwrap_or([0; 8])),
                None => panic!("a store without documents has no document {i}"),
            };
            // Offsets were checked against the length when the store was opened.
            usize::try_from(v).unwrap_or(usize::MAX).min(self.len)
        };
        offset(i)..offset(i + 1)
    }

    /// Access advice for the ids' file: windows are read at random places.
    pub(crate) fn advise_random(&self) {
        #[cfg(target_os = "linux")]
        if let Ids::File { file, .. } = &self.ids {
            use std::os::fd::AsRawFd;
            // Only a hint: without it the kernel reads ahead around every window and fills
            // the page cache with pages that are never used.
            // SAFETY: the descriptor belongs to `file`, open for the whole call; the advice
            // reads or writes no memory of ours.
            let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
    }
}

/// Fills `buf` from `file` at byte `offset` without moving a file position (so threads can
/// share the file).
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills `buf` from `file` at byte `offset`.
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// XXH3-64 of a sequence of ids (line deduplication, line lookups).
pub fn ids_hash(ids: &[u32]) -> u64 {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_stores_read_ranges_and_documents() {
        let s = TokenStore::owned(vec![5, 6, 7, 8, 9], Some(vec![0, 2, 2, 5]));
        assert_eq!((s.len(), s.num_docs()), (5, 3));
        assert_eq!(s.read(1..4), [6, 7, 8]);
        assert_eq!((s.doc(0), s.doc(1), s.doc(2)), (0..2, 2..2, 2..5));
        assert_eq!(TokenStore::owned(vec![1], None).num_docs(), 0);
    }
}
