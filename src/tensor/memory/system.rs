//! What the memory layer asks of the system allocator, for a binary that installs
//! [`CachingAlloc`] as its global allocator (the `convlm` program does; a library user keeps
//! their own): freed large blocks the pool never sees are kept for reuse under the pool's
//! budget, blocks of 4 MiB and more get transparent huge pages, and glibc keeps its heap.
//!
//! The pool reuses every f32 buffer of the engine; the blocks left are other crates'
//! temporaries, chiefly the `gemm` crate's packing buffers (on CPUs with AVX-512 a W1 step
//! allocates one of 10 MB and seven of 264 KiB, a W2 step three of 198 KiB). glibc serves
//! blocks of 128 KiB and more with fresh `mmap`s and unmaps them when freed, so each step
//! page-faulted them back in (without the cache, W1 took ~530 and W4 ~900 more minor faults
//! a step).
//!
//! On Linux, blocks of at least 4 MiB are also 2 MiB-aligned and marked for transparent huge
//! pages (`madvise`; most distributions back only marked memory with them). W1's backward
//! GEMMs read its 82 MB logits gradient one 20 KB row after another, a new 4 KiB page almost
//! every row: with huge pages they ran 3-4% faster. The parameters, their gradients and
//! Adam's moments (56 MB in W1) get them too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::BUDGET;

/// Blocks from this size on are kept (glibc's initial `mmap` threshold).
const MIN_BLOCK: usize = 128 << 10;
/// At most this many blocks are kept: the few sizes other crates allocate each step.
const SLOTS: usize = 64;

/// A kept block: (address, size, align); address 0 marks an empty slot.
type Slot = (usize, usize, usize);

static SLOTS_KEPT: Mutex<[Slot; SLOTS]> = Mutex::new([(0, 0, 0); SLOTS]);
static ENABLED: AtomicBool = AtomicBool::new(false);
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);
static FRESH_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while the pool frees buffers it evicted: those go back to the system, not into
    /// the blocks (const-initialised and without a destructor, so safe in an allocator).
    static BYPASS: Cell<bool> = const { Cell::new(false) };
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

/// What the allocator's blocks hold and have done (zeros where [`CachingAlloc`] is not the
/// global allocator, or [`cache_blocks`] was not called).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockReport {
    /// Bytes kept idle now.
    pub kept_bytes: u64,
    /// Blocks kept idle now.
    pub kept_blocks: u64,
    /// Allocations of 128 KiB and more served from a kept block.
    pub hits: u64,
    /// Allocations of 128 KiB and more served by the system (the pool's new buffers among them).
    pub misses: u64,
    /// Bytes of those misses.
    pub fresh_bytes: u64,
}

/// Starts keeping freed blocks of 128 KiB and more. Commands that stream data (`prepare`)
/// leave it off: their buffers come in ever new sizes, which a cache of exact sizes only
/// hoards.
pub fn cache_blocks() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Tells glibc's malloc to keep the memory it frees (call once, first thing in `main`).
///
/// By default glibc gives the top of its heap back to the kernel whenever 128 KiB or more
/// lie free there (`M_TRIM_THRESHOLD`), and a training step frees and re-allocates its small
/// buffers every step, so each step page-faulted them back in: a 1-thread wavenet run on
/// names spent 0.96 s of its 2.34 s of CPU time in the kernel (460k minor faults over 200
/// steps); with the heap kept, 0.03 s of 1.45 s (20k faults). The heap then stays at its
/// peak size, which for a training process is what it needs anyway. Blocks of 128 KiB and
/// more still get their own `mmap` (setting the trim threshold fixes glibc's `mmap`
/// threshold there), so they are the pool's and the blocks' to keep.
pub fn keep_freed_heap() {
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

/// Runs `f` (which frees buffers the pool evicted) with the blocks bypassed: what it frees
/// goes back to the system.
pub(super) fn bypassing<R>(f: impl FnOnce() -> R) -> R {
    let before = BYPASS.with(|b| b.replace(true));
    let out = f();
    BYPASS.with(|b| b.set(before));
    out
}

/// What the blocks hold and have done.
pub fn report() -> BlockReport {
    let slots = SLOTS_KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = slots.iter().filter(|s| s.0 != 0);
    BlockReport {
        kept_bytes: kept.clone().map(|s| s.1 as u64).sum(),
        kept_blocks: kept.count() as u64,
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        fresh_bytes: FRESH_BYTES.load(Ordering::Relaxed),
    }
}

/// Frees every kept block.
pub(super) fn release() {
    let mut freed: [Slot; SLOTS] = [(0, 0, 0); SLOTS];
    {
        let mut slots = SLOTS_KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *slots, &mut freed);
    }
    for &(addr, size, align) in freed.iter().filter(|s| s.0 != 0) {
        BUDGET.unkeep(size);
        // SAFETY: a kept block came from `System` with `system_layout` of this size and
        // alignment (a valid layout when it was kept), and it left the slots above, so
        // nothing else can hand it out.
        unsafe { System.dealloc(addr as *mut u8, system_layout(Layout::from_size_align_unchecked(size, align))) };
    }
}

/// A kept block of exactly `layout`, out of the slots; null if none.
fn take(layout: Layout) -> *mut u8 {
    let Ok(mut slots) = SLOTS_KEPT.lock() else { return std::ptr::null_mut() };
    let Some(slot) = slots.iter_mut().find(|s| s.0 != 0 && s.1 == layout.size() && s.2 == layout.align()) else {
        return std::ptr::null_mut();
    };
    let addr = std::mem::take(slot).0;
    drop(slots);
    BUDGET.unkeep(layout.size());
    addr as *mut u8
}

/// Keeps a freed block when caching is on, the budget has room and a slot is free.
fn keep(ptr: *mut u8, layout: Layout) -> bool {
    if !ENABLED.load(Ordering::Relaxed) || BYPASS.with(Cell::get) {
        return false;
    }
    let Ok(mut slots) = SLOTS_KEPT.lock() else { return false };
    let Some(slot) = slots.iter_mut().find(|s| s.0 == 0) else { return false };
    if !BUDGET.try_keep(layout.size()) {
        return false;
    }
    *slot = (ptr as usize, layout.size(), layout.align());
    true
}

/// The system allocator, keeping freed blocks of 128 KiB and more for the next allocation of
/// the same size and alignment (once [`cache_blocks`] is called), within the budget, and
/// advising huge pages for blocks of 4 MiB and more.
pub struct CachingAlloc;

// SAFETY: every block handed out is either fresh from `System` with `system_layout(layout)`,
// or a block of exactly the same size and alignment that a `dealloc` kept (so it is unused,
// at least `layout.size()` bytes and aligned for `layout`). Blocks freed to `System` are
// freed with the same `system_layout` they were allocated with, and the slots are behind a
// mutex, so no block is handed out twice.
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            let p = take(layout);
            if !p.is_null() {
                HITS.fetch_add(1, Ordering::Relaxed);
                return p;
            }
            MISSES.fetch_add(1, Ordering::Relaxed);
            FRESH_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: `GlobalAlloc::alloc`'s caller guarantees a non-zero size.
        unsafe { from_system(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            let p = take(layout);
            if !p.is_null() {
                HITS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: a kept block holds at least `layout.size()` writable bytes.
                unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
                return p;
            }
            MISSES.fetch_add(1, Ordering::Relaxed);
            FRESH_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: `GlobalAlloc::alloc_zeroed`'s caller guarantees a non-zero size.
        unsafe { from_system(layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BLOCK && keep(ptr, layout) {
            return;
        }
        // SAFETY: `ptr` came from this allocator with `layout`, so from `System` with
        // `system_layout(layout)` (a kept block is only ever handed out for the same layout).
        unsafe { System.dealloc(ptr, system_layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() < MIN_BLOCK && new_size < MIN_BLOCK {
            // SAFETY: blocks below MIN_BLOCK (< HUGE_MIN) come straight from `System` with
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
