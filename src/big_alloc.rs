//! Global allocator for the `convlm` binary: the system allocator plus a small cache of
//! large blocks (>= 128 KiB, glibc's initial `mmap` threshold). Training allocates the same
//! large buffers (logits, their gradient, activations) every step; glibc serves those with
//! fresh `mmap`s and unmaps them on free, so each step page-faults hundreds of MB back in
//! (and, for blocks just above 128 KiB, keeps doing so for the first ~10 steps until its
//! dynamic threshold adapts: W2 ran ~25% slower over those steps). Reusing blocks avoids it.
//!
//! On Linux, blocks of at least 4 MiB are also 2 MiB-aligned and marked for transparent
//! huge pages (`madvise`; most distributions only back marked memory with them). W1's
//! backward GEMMs read its 82 MB logits gradient with a 20 KB stride, a new 4 KiB page
//! almost every row: with huge pages they ran 3-4% faster (same-process alternating calls).

use std::alloc::{GlobalAlloc, Layout, System};

/// Keeps freed blocks of 128 KiB and more for reuse by an allocation of the same size (the
/// buffers of a training step). Commands that stream data (`prepare`) leave it off: their
/// buffers come in ever new sizes, which a cache of exact sizes only hoards (a prepare of
/// 111 MB had reached 1 GB of resident memory).
pub fn cache_large_blocks() {
    CACHE_ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Tells glibc's malloc to keep the memory it frees (call once, first thing in `main`).
///
/// By default glibc gives the top of its heap back to the kernel whenever 128 KiB or more
/// lie free there (`M_TRIM_THRESHOLD`), and a training step frees and re-allocates its small
/// buffers every step, so each step page-faulted them back in: a 1-thread wavenet run on
/// names spent 0.96 s of its 2.34 s of CPU time in the kernel (460k minor faults over 200
/// steps); with the heap kept, 0.03 s of 1.45 s (20k faults). The heap then stays at its
/// peak size, which for a training process is what it needs anyway.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's tuning parameters; it is called before any
        // other thread exists, as glibc asks.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}
use std::sync::Mutex;

const MIN_SIZE: usize = 128 << 10;
const SLOTS: usize = 1024;
const MAX_CACHED_BYTES: usize = 1 << 30;

/// A cached free block: (address, size, align); address 0 marks an empty slot.
struct Cache {
    slots: [(usize, usize, usize); SLOTS],
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache { slots: [(0, 0, 0); SLOTS], bytes: 0 });

/// Whether freed large blocks are kept for reuse (see [`cache_large_blocks`]).
static CACHE_ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub struct CachingAlloc;

impl CachingAlloc {
    fn take(layout: Layout) -> *mut u8 {
        let Ok(mut c) = CACHE.lock() else { return std::ptr::null_mut() };
        for slot in c.slots.iter_mut() {
            if slot.0 != 0 && slot.1 == layout.size() && slot.2 == layout.align() {
                let p = slot.0;
                *slot = (0, 0, 0);
                c.bytes -= layout.size();
                return p as *mut u8;
            }
        }
        std::ptr::null_mut()
    }

    /// Keeps the block; false when the cache is full or off.
    fn keep(ptr: *mut u8, layout: Layout) -> bool {
        if !CACHE_ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let Ok(mut c) = CACHE.lock() else { return false };
        if c.bytes + layout.size() > MAX_CACHED_BYTES {
            return false;
        }
        if let Some(slot) = c.slots.iter_mut().find(|s| s.0 == 0) {
            *slot = (ptr as usize, layout.size(), layout.align());
            c.bytes += layout.size();
            return true;
        }
        false
    }
}

/// Blocks from this size on are backed by huge pages where the OS allows it.
const HUGE_MIN: usize = 4 << 20;
/// The x86-64 huge page size.
const HUGE_PAGE: usize = 2 << 20;

/// The layout asked of the system allocator: huge-page aligned from [`HUGE_MIN`] on. Used
/// for both allocating and freeing, so the two always agree.
fn system_layout(layout: Layout) -> Layout {
    if layout.size() < HUGE_MIN {
        return layout;
    }
    Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).unwrap_or(layout)
}

/// A new block from the system allocator, with [`system_layout`], huge pages advised.
///
/// # Safety
/// `layout` must have a non-zero size (the `GlobalAlloc` contract of the caller).
unsafe fn from_system(layout: Layout, zeroed: bool) -> *mut u8 {
    let layout = system_layout(layout);
    // SAFETY: `system_layout` keeps the size (non-zero by the contract) and only raises the
    // alignment to another power of two.
    let p = unsafe {
        if zeroed {
            System.alloc_zeroed(layout)
        } else {
            System.alloc(layout)
        }
    };
    advise_huge(p, layout);
    p
}

/// Asks the kernel to back a fresh block with huge pages (a hint: failure changes nothing).
fn advise_huge(ptr: *mut u8, layout: Layout) {
    #[cfg(target_os = "linux")]
    if !ptr.is_null() && layout.size() >= HUGE_MIN && (ptr as usize).is_multiple_of(HUGE_PAGE) {
        // SAFETY: the range lies within the block just allocated; madvise does not touch it.
        unsafe { libc::madvise(ptr.cast(), layout.size() / HUGE_PAGE * HUGE_PAGE, libc::MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, layout);
}

// SAFETY: every block handed out is either fresh from `System` with `system_layout(layout)`,
// or a block of exactly the same size and alignment that a `dealloc` returned to the cache
// (so it is unused, at least `layout.size()` bytes and aligned for `layout`). Blocks freed
// to `System` are freed with the same `system_layout` they were allocated with, and the
// cache is behind a mutex, so no block is handed out twice.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_SIZE {
            let p = Self::take(layout);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: `GlobalAlloc::alloc`'s caller guarantees a non-zero size.
        unsafe { from_system(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_SIZE {
            let p = Self::take(layout);
            if !p.is_null() {
                // SAFETY: a cached block holds at least `layout.size()` writable bytes.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
                return p;
            }
        }
        // SAFETY: `GlobalAlloc::alloc_zeroed`'s caller guarantees a non-zero size.
        unsafe { from_system(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_SIZE && Self::keep(ptr, layout) {
            return;
        }
        // SAFETY: `ptr` came from this allocator with `layout`, so from `System` with
        // `system_layout(layout)` (a cached block is only ever handed out for the same layout).
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < MIN_SIZE && new_size < MIN_SIZE {
            // SAFETY: small blocks below MIN_SIZE (< HUGE_MIN) come straight from `System` with
            // this very layout; the caller guarantees `ptr`, `layout` and a valid `new_size`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `GlobalAlloc::realloc`'s caller guarantees that `new_size`, rounded up to
        // `layout.align()`, does not overflow isize, and the alignment is `layout`'s own.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_size` is non-zero (the caller's contract).
        let p = unsafe { self.alloc(new_layout) };
        if !p.is_null() {
            // SAFETY: both blocks hold at least `min(old, new)` bytes and are distinct (the
            // old one is still allocated); `ptr` was allocated here with `layout`.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}
