//! A bounded map from pre-tokenized words to their ids, and a pool of them for worker threads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// Words longer than this many bytes are encoded every time, never cached.
pub(super) const MAX_CACHED_WORD: usize = 128;

/// Bytes counted for one entry besides its key and ids (hash-table slot, key allocation).
const ENTRY_OVERHEAD: usize = 48;

/// The Fx hash (rustc's): a multiply and a rotate per 8 bytes, fast on short keys. Not
/// resistant to crafted collisions, which could only slow a lookup down.
#[derive(Default, Clone, Copy)]
pub(super) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes its control byte from the top bits: fold the low bits in.
        self.hash ^ (self.hash >> 29)
    }
}

/// Words (their bytes before the byte-level mapping) to ids, at most `limit` bytes in all
/// (estimated); when an insert would pass the limit the cache is emptied first, so it follows
/// a corpus whose vocabulary drifts and never grows past its budget.
pub(super) struct WordCache {
    /// Word → (start, length) in `ids`.
    map: HashMap<Box<[u8]>, (u32, u32), BuildHasherDefault<FxHasher>>,
    ids: Vec<u32>,
    bytes: usize,
    limit: usize,
}

impl WordCache {
    pub(super) fn new(limit: usize) -> Self {
        // Offsets into `ids` are u32: the budget keeps them in range.
        let limit = limit.min(u32::MAX as usize);
        WordCache { map: HashMap::default(), ids: Vec::new(), bytes: 0, limit }
    }

    /// The ids of `word`, if cached.
    #[inline]
    pub(super) fn get(&self, word: &[u8]) -> Option<&[u32]> {
        let &(start, len) = self.map.get(word)?;
        self.ids.get(start as usize..start as usize + len as usize)
    }

    /// Caches `ids` for `word` (not cached yet); words over [`MAX_CACHED_WORD`] are skipped.
    pub(super) fn insert(&mut self, word: &[u8], ids: &[u32]) {
        if word.len() > MAX_CACHED_WORD {
            return;
        }
        let cost = word.len() + 4 * ids.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > self.limit {
            self.clear();
            if cost > self.limit {
                return;
            }
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(ids);
        self.map.insert(word.into(), (start, ids.len() as u32));
        self.bytes += cost;
    }

    fn clear(&mut self) {
        self.map = HashMap::default();
        self.ids = Vec::new();
        self.bytes = 0;
    }

    /// Number of cached words.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Caches lent to encoding tasks: each task takes one for its whole chunk (no lock per word)
/// and gives it back, so about one warm cache exists per thread of the pool.
pub(super) struct CachePool {
    idle: Mutex<Vec<WordCache>>,
    limit: usize,
}

impl CachePool {
    /// A pool whose caches hold at most `limit` bytes each.
    pub(super) fn new(limit: usize) -> Self {
        CachePool { idle: Mutex::new(Vec::new()), limit }
    }

    /// Runs `f` with a cache of the pool (a new one when all are lent).
    pub(super) fn with_cache<R>(&self, f: impl FnOnce(&mut WordCache) -> R) -> R {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut cache = taken.unwrap_or_else(|| WordCache::new(self.limit));
        let result = f(&mut cache);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // More caches than threads only happen with nested parallelism: drop the surplus.
        if idle.len() <= rayon::current_num_threads() {
            idle.push(cache);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_returns_what_was_inserted() {
        let mut cache = WordCache::new(1 << 20);
        cache.insert(b"hello", &[1, 2]);
        cache.insert(b" world", &[3]);
        assert_eq!(cache.get(b"hello"), Some(&[1, 2][..]));
        assert_eq!(cache.get(b" world"), Some(&[3][..]));
        assert_eq!(cache.get(b"hell"), None);
    }

    #[test]
    fn stays_within_its_budget() {
        let limit = 10 * (ENTRY_OVERHEAD + 8 + 4);
        let mut cache = WordCache::new(limit);
        for i in 0..1000u32 {
            cache.insert(format!("w{i:07}").as_bytes(), &[i]);
            assert!(cache.bytes <= limit);
            assert!(cache.len() <= 10);
            assert_eq!(cache.get(format!("w{i:07}").as_bytes()), Some(&[i][..]));
        }
    }

    #[test]
    fn long_words_are_not_cached() {
        let mut cache = WordCache::new(1 << 20);
        let long = vec![b'a'; MAX_CACHED_WORD + 1];
        cache.insert(&long, &[1]);
        assert_eq!(cache.get(&long), None);
    }
}
