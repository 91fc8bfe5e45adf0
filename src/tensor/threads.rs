//! Thread control: one global rayon pool sized by `--threads` / `CONVLM_THREADS`.

use std::sync::OnceLock;

static CONFIGURED: OnceLock<usize> = OnceLock::new();

/// The thread count convlm uses: `requested` if given, else `CONVLM_THREADS`, else the number
/// of available cores.
pub fn resolve_threads(requested: Option<usize>) -> usize {
    requested
        .filter(|&n| n > 0)
        .or_else(|| std::env::var("CONVLM_THREADS").ok().and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0))
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Sizes the global rayon pool once; later calls return the size already in force.
pub fn init_threads(requested: Option<usize>) -> usize {
    *CONFIGURED.get_or_init(|| {
        let n = resolve_threads(requested);
        // Fails only if another part of the process built the global pool first; then that
        // pool is used as it is.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
        rayon::current_num_threads()
    })
}
