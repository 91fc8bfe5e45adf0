//! Where the long calls run: convlm's thread pool, with the GIL released, while the calling
//! thread keeps watch — every [`TICK`] it takes the GIL briefly to run Python's signal
//! handlers (Ctrl-C, Jupyter's interrupt: the cancel token is set, the run stops at its next
//! step boundary and saves a checkpoint, and `KeyboardInterrupt` is raised once the call has
//! returned) and to hand the call's events to the progress display.
//!
//! The pool is this module's own, not rayon's global one, so that it survives `fork`: a child
//! process has none of its parent's threads, so the first call in a child (a new process id)
//! builds a new pool and leaves the parent's, which no thread serves there, untouched.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use convlm::run::CancelToken;
use convlm::tensor::threads::resolve_threads;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::progress::Feed;

/// How often the waiting thread looks for signals and events.
pub const TICK: Duration = Duration::from_millis(50);

/// The pool of one process.
struct Pool {
    pid: u32,
    threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// The pool for `threads` workers (`None`: the pool in use, else `CONVLM_THREADS` or every
/// core; never more than the cores), built for this process.
pub fn pool(threads: Option<usize>) -> PyResult<Arc<rayon::ThreadPool>> {
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if slot.as_ref().is_some_and(|p| p.pid != pid) {
        // A forked child: the parent's workers do not exist here. Dropping the pool would
        // signal them (and may wait on a lock one of them held at the fork): forget it.
        std::mem::forget(slot.take());
    }
    let wanted = threads.map(|t| resolve_threads(Some(t)));
    if let Some(p) = slot.as_ref().filter(|p| wanted.is_none_or(|w| w == p.threads)) {
        return Ok(p.pool.clone());
    }
    let n = wanted.unwrap_or_else(|| resolve_threads(None));
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("convlm-{i}"))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("could not start {n} worker threads: {e}")))?;
    let pool = Arc::new(built);
    *slot = Some(Pool { pid, threads: n, pool: pool.clone() });
    Ok(pool)
}

/// Runs `job` on the pool for `threads` with the GIL released, keeping watch from the calling
/// thread (see the module docs): a signal cancels `cancel` (when given) and is raised once
/// `job` has returned; `feed` gets the events. A panic in `job` becomes a `RuntimeError`.
pub fn run<R: Send>(py: Python<'_>, threads: Option<usize>, cancel: Option<&CancelToken>, feed: &Feed, job: impl FnOnce() -> R + Send) -> PyResult<R> {
    let pool = pool(threads)?;
    let mut signal: Option<PyErr> = None;
    let mut feed_error: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let (tx, rx) = mpsc::channel();
        pool.in_place_scope(|scope| {
            scope.spawn(move |_| {
                let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
            });
            loop {
                match rx.recv_timeout(TICK) {
                    Ok(outcome) => return Some(outcome),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                    Err(mpsc::RecvTimeoutError::Timeout) => Python::attach(|py| {
                        if signal.is_none() {
                            if let Err(e) = py.check_signals() {
                                if let Some(c) = cancel {
                                    c.cancel();
                                }
                                signal = Some(e);
                            }
                        }
                        if feed_error.is_none() {
                            feed_error = feed.deliver(py).err();
                        }
                    }),
                }
            }
        })
    });
    let delivered = feed.deliver(py);
    // A signal that came during the call is raised before anything else.
    if let Some(e) = signal {
        return Err(e);
    }
    if let Some(e) = feed_error {
        return Err(e);
    }
    delivered?;
    match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(panic)) => Err(internal_error(&panic_text(&*panic))),
        None => Err(internal_error("its worker thread stopped")),
    }
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic".to_string(),
    }
}

/// The error for a bug in convlm (a panic): the interpreter goes on.
fn internal_error(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("convlm failed unexpectedly (please report this): {what}"))
}
