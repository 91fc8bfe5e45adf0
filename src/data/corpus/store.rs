//! [`TokenStore`]: the tokens of a corpus as one flat sequence of ids plus document
//! boundaries (lines, for line and grid data), held in memory or memory-mapped from a
//! prepared corpus. Datasets read windows and documents from it without copying the corpus.

use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// How the ids are held.
#[derive(Debug)]
enum Ids {
    Owned(Vec<u32>),
    /// Little-endian u16 or u32 ids in a mapped file.
    Mapped {
        map: Mmap,
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
    /// The file the ids are mapped from, for errors about its contents.
    path: Option<PathBuf>,
}

impl TokenStore {
    /// A store in memory: `ids`, and for documents (lines) their `n + 1` boundary offsets.
    pub fn owned(ids: Vec<u32>, docs: Option<Vec<u64>>) -> Self {
        let len = ids.len();
        TokenStore { ids: Ids::Owned(ids), docs: docs.map(Offsets::Owned), len, path: None }
    }

    /// A store over mapped files whose sizes the caller has checked: `ids` (mapped from
    /// `path`) holds `len` values of 2 (`wide` false) or 4 bytes, `docs` whole u64 offsets.
    pub(crate) fn mapped(ids: Mmap, wide: bool, len: usize, docs: Option<Mmap>, path: &Path) -> Self {
        TokenStore { ids: Ids::Mapped { map: ids, wide }, docs: docs.map(Offsets::Mapped), len, path: Some(path.to_path_buf()) }
    }

    /// The file the ids are mapped from (`None` in memory).
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

    /// Appends the ids of `range` to `out`.
    ///
    /// # Panics
    /// If `range` is out of bounds (datasets only ask for ranges they built from the store).
    pub fn read_into(&self, range: Range<usize>, out: &mut Vec<u32>) {
        assert!(range.start <= range.end && range.end <= self.len, "token range {range:?} outside a store of {}", self.len);
        match &self.ids {
            Ids::Owned(v) => out.extend_from_slice(&v[range]),
            Ids::Mapped { map, wide: false } => {
                out.extend(map[2 * range.start..2 * range.end].chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))))
            }
            Ids::Mapped { map, wide: true } => {
                out.extend(map[4 * range.start..4 * range.end].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
        }
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

    /// Memory-map access advice: windows are read at random places.
    pub(crate) fn advise_random(&self) {
        #[cfg(unix)]
        if let Ids::Mapped { map, .. } = &self.ids {
            // Only a hint: without it the kernel reads ahead and keeps pages that are
            // never used, which shows as resident memory growing with the corpus.
            let _ = map.advise(memmap2::Advice::Random);
        }
    }
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
