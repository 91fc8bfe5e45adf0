//! Thread control: one global rayon pool sized by `--threads` / `CONVLM_THREADS`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static CONFIGURED: OnceLock<usize> = OnceLock::new();

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The thread count asked for: `requested` if given, else `CONVLM_THREADS`, else none.
fn asked(requested: Option<usize>) -> Option<usize> {
    requested.filter(|&n| n > 0).or_else(|| std::env::var("CONVLM_THREADS").ok().and_then(|v| v.trim().parse().ok()).filter(|&n| n > 0))
}

/// The thread count convlm uses: `requested` if given, else `CONVLM_THREADS`, else the number
/// of available cores — never more than the cores. The pool's workers spin and split every
/// op between them, so extra threads only take turns on the same cores: `--threads 16` on 2
/// cores ran 3x slower than `--threads 1`, and `--threads 1000` took 14 s for 5 steps.
pub fn resolve_threads(requested: Option<usize>) -> usize {
    asked(requested).unwrap_or(usize::MAX).min(available_cores())
}

/// A warning for a thread count above the cores (which [`resolve_threads`] caps), `None`
/// otherwise.
pub fn oversubscription_warning(requested: Option<usize>) -> Option<String> {
    let (n, cores) = (asked(requested)?, available_cores());
    (n > cores).then(|| format!("{n} threads requested but this machine has {cores} cores: using {cores} (more threads than cores only take turns)"))
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

/// Runs `f` on a worker of the global pool (the caller blocks until it returns).
///
/// Called from the main thread, every parallel op would hand all of its pieces to the pool
/// and sleep until they finish, paying a cross-thread wake-up per op; on a pool worker the
/// op keeps a piece and the others are stolen. For W2, whose ops take tens of microseconds,
/// that measured 11.1 → 7.6 ms per step (median of 300, 2 threads).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Runs `f` while the pool's other workers wait for work awake, spinning, instead of
/// going to sleep between parallel ops.
///
/// A training step is a sequence of parallel ops with short serial stretches between them
/// (W2: ~7 ms for a few hundred ops). Idle rayon workers soon go to sleep, so most ops
/// began with a futex wake-up and a reschedule on a virtual machine (~12% of W2's time in
/// the kernel's scheduler). Here each other worker runs a job that takes pending work with
/// `rayon::yield_now` until `f` returns. A spinning job that ends up on `f`'s own thread
/// returns at once, and one that finds no work for [`MAX_IDLE_SPIN`] returns too, so a
/// worker can never stay held in it (`f` finishing early, or waiting on that worker).
pub fn with_workers_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        // `scope` runs this closure on a pool worker, even when called from outside.
        let me = rayon::current_thread_index();
        for _ in 1..rayon::current_num_threads() {
            let done = &done;
            s.spawn(move |_| {
                if rayon::current_thread_index() != me {
                    spin_for_work(done);
                }
            });
        }
        // Set even if `f` panics, so that the spinning jobs end and the panic propagates.
        let _done = SetOnDrop(&done);
        f()
    })
}

/// How long a kept-awake worker spins without finding work before it returns to rayon's
/// own idle loop (which sleeps).
pub const MAX_IDLE_SPIN: Duration = Duration::from_millis(20);

fn spin_for_work(done: &AtomicBool) {
    let mut idle_since: Option<Instant> = None;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() > MAX_IDLE_SPIN {
            return;
        }
        std::hint::spin_loop();
    }
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn with_workers_awake_returns_what_f_returns_and_parallel_work_inside_completes() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let sum = pool.install(|| with_workers_awake(|| (0..10_000u64).into_par_iter().map(|v| v * v).sum::<u64>()));
        assert_eq!(sum, (0..10_000u64).map(|v| v * v).sum::<u64>());
        // From outside any pool, and on a one-thread pool, it still just runs f.
        assert_eq!(with_workers_awake(|| 7), 7);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| with_workers_awake(|| 8)), 8);
    }

    #[test]
    fn a_panic_in_f_reaches_the_caller_instead_of_hanging() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| with_workers_awake(|| -> u32 { panic!("boom") }))));
        assert!(caught.is_err());
    }
}
