//! The one budget: bytes kept idle, by the pool and the allocator's blocks together.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default budget: 1 GiB kept idle.
pub(super) const DEFAULT_BUDGET: usize = 1 << 30;

/// A limit on the bytes kept idle, and what is kept now and at most, shared by every store
/// that keeps memory for reuse (the pool's buffers, the allocator's blocks). Lock-free, so
/// the global allocator can use it.
pub struct Budget {
    limit: AtomicUsize,
    kept: AtomicUsize,
    peak: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes, nothing kept.
    pub const fn new(limit: usize) -> Self {
        Budget { limit: AtomicUsize::new(limit), kept: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    /// Counts `bytes` more as kept, if they fit within the limit.
    pub(super) fn try_keep(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let added = self.kept.fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| k.checked_add(bytes).filter(|&n| n <= limit));
        match added {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Counts `bytes` kept before as no longer kept (taken for reuse, or freed).
    pub(super) fn unkeep(&self, bytes: usize) {
        self.kept.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Sets the limit (what is kept beyond it is for the stores to free).
    pub(super) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes kept now.
    pub fn kept(&self) -> usize {
        self.kept.load(Ordering::Acquire)
    }

    /// The most bytes kept at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Whether more is kept than the limit allows.
    pub(super) fn over(&self) -> bool {
        self.kept() > self.limit()
    }
}
