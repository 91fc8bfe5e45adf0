//! The MPI communicator (cargo feature `mpi`), on the raw bindings of the `mpi` crate
//! (rsmpi): any MPI-3 library, OpenMPI on Debian.
//!
//! Every operation is a non-blocking collective (`MPI_Iallreduce`, `MPI_Ibcast`) completed
//! by polling `MPI_Test`, so a wait can end: after [`MpiComm`]'s time limit (a hung rank),
//! or soon after an interrupt flag is set (Ctrl-C, or the launcher's SIGTERM when another
//! rank died) — with an error naming what was waited for, never a hang. MPI is initialised
//! at `MPI_THREAD_SERIALIZED` (training runs on a pool thread, not the main one) and every
//! call is made under one lock. Errors are returned, not fatal (`MPI_ERRORS_RETURN`).

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mpi::ffi;

use super::comm::{stopped_by_signal, Communicator, Pending, Wait};
use crate::error::{Error, Result};

/// Serializes the MPI calls of this process (MPI_THREAD_SERIALIZED: any thread, one at a
/// time).
static CALLS: Mutex<()> = Mutex::new(());

fn calls() -> MutexGuard<'static, ()> {
    CALLS.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a wait spins (yielding the core) before it polls with short sleeps: a step's
/// sums finish within it; rank 0 writing a checkpoint does not.
const SPIN: Duration = Duration::from_millis(20);
const POLL: Duration = Duration::from_micros(200);
/// How long a wait goes on after the interrupt flag is set: the others, interrupted too,
/// arrive within it; a dead rank never does (and the launcher kills this one about a
/// second after its SIGTERM, so this is shorter).
const INTERRUPT_GRACE: Duration = Duration::from_millis(500);

/// A communicator handle.
#[derive(Clone, Copy, Debug)]
struct Comm(ffi::MPI_Comm);

// SAFETY: an MPI communicator handle names a process-wide MPI object; under
// MPI_THREAD_SERIALIZED it may be used from any thread, and every use here holds CALLS.
unsafe impl Send for Comm {}
// SAFETY: as for Send: shared references only copy the handle into calls made under CALLS.
unsafe impl Sync for Comm {}

impl Comm {
    fn null() -> Self {
        // SAFETY: reading a predefined constant of the MPI library.
        Comm(unsafe { ffi::RSMPI_COMM_NULL })
    }
}

/// A request handle of an operation in flight.
struct Request(ffi::MPI_Request);

impl Request {
    fn null() -> Self {
        // SAFETY: reading a predefined constant of the MPI library.
        Request(unsafe { ffi::RSMPI_REQUEST_NULL })
    }
}

// SAFETY: as for `Comm`: a request is a process-wide handle, used only under CALLS.
unsafe impl Send for Request {}

/// What the operations and their requests share.
#[derive(Debug)]
struct Inner {
    /// The ranks' communicator, and a duplicate for the agreement at exit (its operations
    /// never match a pending one of the world's).
    world: Comm,
    exit: Comm,
    rank: usize,
    size: usize,
    local_size: usize,
    limit: Duration,
    interrupt: Mutex<Option<Arc<AtomicBool>>>,
}

/// What this process's wait in progress waits for (a lock of its own: the waiting thread may
/// be stuck inside an MPI call, holding CALLS). One per process, as MPI is.
static WAITING: Mutex<Option<String>> = Mutex::new(None);

/// What this rank waits for the other ranks in right now, if it waits.
pub fn waiting_for() -> Option<String> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The ranks of `MPI_COMM_WORLD`. Dropping it finalizes MPI (drop it on the main thread,
/// after every other handle).
pub struct MpiComm {
    inner: Arc<Inner>,
    universe: Option<mpi::environment::Universe>,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.inner.rank, self.inner.size)
    }
}

/// An MPI return code as a result.
fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == ffi::MPI_SUCCESS as c_int {
        return Ok(());
    }
    let mut text = [0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters and a terminator, as the
    // call requires; `len` is a valid out-pointer.
    let known = unsafe { ffi::MPI_Error_string(rc, text.as_mut_ptr(), &mut len) } == ffi::MPI_SUCCESS as c_int;
    let bytes: Vec<u8> = text[..len.clamp(0, ffi::MPI_MAX_ERROR_STRING as c_int) as usize].iter().map(|&c| c as u8).collect();
    let msg = if known { String::from_utf8_lossy(&bytes).into_owned() } else { "unknown error".into() };
    Err(Error::distributed(format!("{what}: MPI error {rc}: {msg}")))
}

impl MpiComm {
    /// Initialises MPI and joins the ranks of this job; a wait for the others may take at most
    /// `limit` (except where the caller says it may take any time).
    pub fn init(limit: Duration) -> Result<Self> {
        let (universe, threading) =
            mpi::initialize_with_threading(mpi::Threading::Serialized).ok_or_else(|| Error::distributed("MPI was initialised already in this process"))?;
        if threading < mpi::Threading::Serialized {
            return Err(Error::distributed(format!("the MPI library offers only {threading:?} threading; convlm needs MPI_THREAD_SERIALIZED")));
        }
        let _calls = calls();
        let (mut rank, mut size, mut local_size): (c_int, c_int, c_int) = (0, 0, 0);
        let (mut exit, mut node) = (Comm::null(), Comm::null());
        // SAFETY: MPI is initialised; the out-pointers are valid locals; the world handle and
        // the predefined constants are valid for the whole MPI session.
        unsafe {
            let world = ffi::RSMPI_COMM_WORLD;
            check(ffi::MPI_Comm_set_errhandler(world, ffi::RSMPI_ERRORS_RETURN), "MPI setup")?;
            check(ffi::MPI_Comm_rank(world, &mut rank), "MPI setup")?;
            check(ffi::MPI_Comm_size(world, &mut size), "MPI setup")?;
            check(ffi::MPI_Comm_dup(world, &mut exit.0), "MPI setup")?;
            check(ffi::MPI_Comm_split_type(world, ffi::RSMPI_COMM_TYPE_SHARED, rank, ffi::RSMPI_INFO_NULL, &mut node.0), "MPI setup")?;
            check(ffi::MPI_Comm_size(node.0, &mut local_size), "MPI setup")?;
            check(ffi::MPI_Comm_free(&mut node.0), "MPI setup")?;
        }
        let inner = Inner {
            // SAFETY: reading a predefined handle of an initialised MPI.
            world: Comm(unsafe { ffi::RSMPI_COMM_WORLD }),
            exit,
            rank: rank as usize,
            size: size as usize,
            local_size: local_size.max(1) as usize,
            limit,
            interrupt: Mutex::new(None),
        };
        Ok(MpiComm { inner: Arc::new(inner), universe: Some(universe) })
    }
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        let _calls = calls();
        let mut exit = self.inner.exit;
        // SAFETY: `exit` was made by MPI_Comm_dup in `init` and is freed only here, before
        // MPI is finalized (below, when the universe drops).
        unsafe { ffi::MPI_Comm_free(&mut exit.0) };
        drop(_calls);
        drop(self.universe.take());
    }
}

impl Inner {
    fn interrupted(&self) -> bool {
        self.interrupt.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Whether `req` has completed (a completed request becomes MPI_REQUEST_NULL).
    fn test(&self, req: &mut Request, what: &str) -> Result<bool> {
        let _calls = calls();
        let mut flag: c_int = 0;
        // SAFETY: `req` is an active request started by this process (or the null request,
        // for which MPI_Test reports completion); flag is a valid out-pointer; the status
        // is ignored.
        check(unsafe { ffi::MPI_Test(&mut req.0, &mut flag, ffi::RSMPI_STATUS_IGNORE) }, what)?;
        Ok(flag != 0)
    }

    /// Polls `req` to completion, or errors after `limit` or soon after an interrupt.
    fn wait(&self, req: &mut Request, what: &str, limit: Option<Duration>) -> Result<()> {
        *WAITING.lock().unwrap_or_else(|e| e.into_inner()) = Some(what.to_string());
        let result = self.poll(req, what, limit);
        *WAITING.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    }

    fn poll(&self, req: &mut Request, what: &str, limit: Option<Duration>) -> Result<()> {
        let start = Instant::now();
        let mut interrupted_at: Option<Instant> = None;
        loop {
            if self.test(req, what)? {
                return Ok(());
            }
            if self.interrupted() && interrupted_at.get_or_insert_with(Instant::now).elapsed() > INTERRUPT_GRACE {
                return Err(stopped_by_signal(self.rank, self.size, Some(what)));
            }
            if let Some(limit) = limit.filter(|&l| start.elapsed() > l) {
                return Err(Error::distributed(format!(
                    "rank {} of {} waited more than {} s for the other ranks in {what}: a rank hangs or died (CONVLM_MPI_TIMEOUT sets the limit)",
                    self.rank,
                    self.size,
                    limit.as_secs()
                )));
            }
            if start.elapsed() < SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(POLL);
            }
        }
    }

    /// An all-reduce of `values` (MPI type `dtype`, operation `op`) on `comm`, waited for.
    /// The buffers are this call's own and are leaked if the wait fails, so that MPI can
    /// never write into freed memory.
    fn all_reduce<T: Copy + Send + 'static>(
        &self,
        comm: Comm,
        values: &mut [T],
        dtype: ffi::MPI_Datatype,
        op: ffi::MPI_Op,
        what: &str,
        limit: Option<Duration>,
    ) -> Result<()> {
        let count = c_int::try_from(values.len()).map_err(|_| Error::distributed(format!("{what}: too many values")))?;
        let send: Box<[T]> = values.into();
        let mut recv: Box<[T]> = values.into();
        let mut req = Request::null();
        {
            let _calls = calls();
            // SAFETY: both buffers hold `count` values of `dtype` (the caller passes the MPI
            // type of T) and stay allocated until the request completes: on success below,
            // else forever (leaked).
            let rc = unsafe { ffi::MPI_Iallreduce(send.as_ptr() as *const c_void, recv.as_mut_ptr() as *mut c_void, count, dtype, op, comm.0, &mut req.0) };
            check(rc, what)?;
        }
        if let Err(e) = self.wait(&mut req, what, limit) {
            std::mem::forget(send);
            std::mem::forget(recv);
            return Err(e);
        }
        values.copy_from_slice(&recv);
        Ok(())
    }
}

/// A sum of f32 vectors in flight.
struct MpiSum {
    inner: Arc<Inner>,
    req: Request,
    what: String,
    /// Taken by `wait`; leaked by `drop` while the sum is in flight.
    buffers: Option<(Vec<f32>, Vec<f32>)>,
    done: bool,
}

impl Pending for MpiSum {
    fn test(&mut self) -> Result<bool> {
        if !self.done {
            self.done = self.inner.test(&mut self.req, &self.what)?;
        }
        Ok(self.done)
    }

    fn wait(mut self: Box<Self>) -> Result<(Vec<f32>, Vec<f32>)> {
        if !self.done {
            self.inner.wait(&mut self.req, &self.what, Some(self.inner.limit))?;
            self.done = true;
        }
        self.buffers.take().ok_or_else(|| Error::distributed(format!("{}: the buffers are gone", self.what)))
    }
}

impl Drop for MpiSum {
    fn drop(&mut self) {
        if !self.done {
            // MPI may still write the receive buffer: never free it.
            std::mem::forget(self.buffers.take());
        }
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn size(&self) -> usize {
        self.inner.size
    }

    fn local_size(&self) -> usize {
        self.inner.local_size
    }

    fn start_sum_f32(&self, send: Vec<f32>, mut recv: Vec<f32>, what: &str) -> Result<Box<dyn Pending>> {
        if send.len() != recv.len() {
            return Err(Error::distributed(format!("{what}: send and receive buffers differ in length")));
        }
        let count = c_int::try_from(send.len()).map_err(|_| Error::distributed(format!("{what}: too many values")))?;
        let mut req = Request::null();
        {
            let _calls = calls();
            // SAFETY: both buffers hold `count` f32 values; their heap storage does not move
            // when the Vecs move into the returned `MpiSum`, which frees it only after the
            // request completed (and leaks it otherwise).
            let rc = unsafe {
                ffi::MPI_Iallreduce(
                    send.as_ptr() as *const c_void,
                    recv.as_mut_ptr() as *mut c_void,
                    count,
                    ffi::RSMPI_FLOAT,
                    ffi::RSMPI_SUM,
                    self.inner.world.0,
                    &mut req.0,
                )
            };
            check(rc, what)?;
        }
        Ok(Box::new(MpiSum { inner: self.inner.clone(), req, what: what.to_string(), buffers: Some((send, recv)), done: false }))
    }

    fn sum_f64(&self, values: &mut [f64], what: &str, wait: Wait) -> Result<()> {
        // SAFETY (of the constants): predefined handles of an initialised MPI.
        let (dtype, op) = unsafe { (ffi::RSMPI_DOUBLE, ffi::RSMPI_SUM) };
        self.inner.all_reduce(self.inner.world, values, dtype, op, what, wait.limit(self.inner.limit))
    }

    fn max_u64(&self, values: &mut [u64], what: &str, wait: Wait) -> Result<()> {
        // SAFETY (of the constants): predefined handles of an initialised MPI.
        let (dtype, op) = unsafe { (ffi::RSMPI_UINT64_T, ffi::RSMPI_MAX) };
        self.inner.all_reduce(self.inner.world, values, dtype, op, what, wait.limit(self.inner.limit))
    }

    fn broadcast(&self, buf: &mut [u8], what: &str) -> Result<()> {
        let count = c_int::try_from(buf.len()).map_err(|_| Error::distributed(format!("{what}: too many bytes in one piece")))?;
        let mut own: Box<[u8]> = (&*buf).into();
        let mut req = Request::null();
        {
            let _calls = calls();
            // SAFETY: `own` holds `count` bytes and stays allocated until the request
            // completes (leaked below if the wait fails).
            let rc = unsafe { ffi::MPI_Ibcast(own.as_mut_ptr() as *mut c_void, count, ffi::RSMPI_UINT8_T, 0, self.inner.world.0, &mut req.0) };
            check(rc, what)?;
        }
        if let Err(e) = self.inner.wait(&mut req, what, Some(self.inner.limit)) {
            std::mem::forget(own);
            return Err(e);
        }
        buf.copy_from_slice(&own);
        Ok(())
    }

    fn exit_min(&self, value: u64, limit: Duration) -> Result<u64> {
        let mut v = [value];
        // SAFETY (of the constants): predefined handles of an initialised MPI.
        let (dtype, op) = unsafe { (ffi::RSMPI_UINT64_T, ffi::RSMPI_MIN) };
        self.inner.all_reduce(self.inner.exit, &mut v, dtype, op, "the agreement on how the run ended", Some(limit))?;
        Ok(v[0])
    }

    fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        *self.inner.interrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag);
    }

    fn abort(&self, code: i32) -> ! {
        // No lock: a thread holding it may be the one that failed; MPI_Abort is the last call.
        // SAFETY: MPI is initialised and not finalized (`self` is alive); MPI_Abort ends the
        // job and does not return in practice.
        unsafe { ffi::MPI_Abort(self.inner.world.0, code) };
        std::process::exit(code)
    }
}
