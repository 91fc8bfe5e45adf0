//! Thread control: one global rayon pool sized by `--threads` / `CONVLM_THREADS`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static CONFIGURED: OnceLock<usize> = OnceLock::new();

/// Cores this process may run on (read once: the query opens cgroup files, tens of
/// microseconds that a caller stepping from Python would pay on every call).
pub fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
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

/// Sizes the global rayon pool once; later calls return the size already in force. Called
/// on a worker of a pool of the caller's own (the Python module's), it leaves the global
/// pool unbuilt — the work runs on the caller's pool — and returns that pool's size.
pub fn init_threads(requested: Option<usize>) -> usize {
    if rayon::current_thread_index().is_some() && CONFIGURED.get().is_none() {
        return rayon::current_num_threads();
    }
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

/// Leaves every worker of the current pool (the one whose worker calls it; the global pool
/// from outside any) spinning for work until it has found none for `max_idle`, then back in
/// rayon's idle loop (which sleeps).
///
/// For a caller that hands the pool short jobs one after another from outside it (a
/// Python loop taking one training step per call): between two calls the workers would
/// fall asleep, and every call would begin with futex wake-ups. Call it after a job; the
/// next job, arriving within `max_idle`, finds the workers awake. Called at the end of a
/// job on a worker, it wakes no one (the workers are still awake). The cost is at most
/// `max_idle` of spinning on each worker after the last call.
pub fn keep_awake(max_idle: Duration) {
    rayon::spawn_broadcast(move |_| {
        let mut idle_since = Instant::now();
        while idle_since.elapsed() <= max_idle {
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                idle_since = Instant::now();
            } else {
                // Give way to any thread waiting for a core (the caller, woken by the job's
                // end, must not wait for a spinner's time slice).
                std::thread::yield_now();
            }
        }
    });
}

/// Takes pending work of the current pool until `done` is set or no work came for
/// [`MAX_IDLE_SPIN`].
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
    fn kept_awake_workers_run_the_next_jobs_and_return_to_sleep_after_their_idle_time() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        pool.install(|| keep_awake(Duration::from_millis(5)));
        // Jobs handed in while the workers spin are run (by a spinning worker's yield).
        for i in 0..20u64 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(pool_sum(i)).unwrap());
        }
        let mut got: Vec<u64> = (0..20).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        got.sort();
        let mut want: Vec<u64> = (0..20).map(pool_sum).collect();
        want.sort();
        assert_eq!(got, want);
        // The spinning ends: after the idle time no worker uses the CPU any more.
        std::thread::sleep(Duration::from_millis(50));
        let before = pool.broadcast(|_| thread_cpu_ms());
        std::thread::sleep(Duration::from_millis(200));
        let after = pool.broadcast(|_| thread_cpu_ms());
        for (b, a) in before.iter().zip(&after) {
            assert!(a - b < 50.0, "a worker kept spinning: {b} -> {a} ms of CPU");
        }
    }

    /// CPU time of the calling thread, in ms.
    #[cfg(target_os = "linux")]
    fn thread_cpu_ms() -> f64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
    }

    #[cfg(not(target_os = "linux"))]
    fn thread_cpu_ms() -> f64 {
        0.0
    }

    fn pool_sum(i: u64) -> u64 {
        (0..1000u64).into_par_iter().map(|v| v * i).sum()
    }

    #[test]
    fn on_a_pool_of_the_callers_own_the_global_pool_is_left_alone() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let before = CONFIGURED.get().copied();
        let got = pool.install(|| init_threads(Some(1)));
        assert_eq!(got, before.unwrap_or(3), "the caller's pool has 3 threads");
        assert_eq!(CONFIGURED.get().copied(), before, "the global pool was sized from inside another pool");
    }

    #[test]
    fn a_panic_in_f_reaches_the_caller_instead_of_hanging() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| with_workers_awake(|| -> u32 { panic!("boom") }))));
        assert!(caught.is_err());
    }
}
