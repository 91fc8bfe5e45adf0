//! [`Group`]: a shared handle to the ranks of a run, with the few agreements training needs
//! built from the [`Communicator`]'s operations.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::comm::{Communicator, Pending, Single, Wait};
use crate::error::{Error, Result};

/// The ranks a run trains on: one process ([`Group::single`], the default) or several.
#[derive(Clone, Debug)]
pub struct Group(Arc<dyn Communicator>);

impl Default for Group {
    fn default() -> Self {
        Group::single()
    }
}

/// Largest piece of a broadcast (MPI counts are 32-bit).
const BROADCAST_PIECE: usize = 1 << 30;

impl Group {
    /// One process alone.
    pub fn single() -> Self {
        Group(Arc::new(Single))
    }

    /// The ranks of `comm`.
    pub fn new(comm: Arc<dyn Communicator>) -> Self {
        Group(comm)
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// Ranks on this machine.
    pub fn local_size(&self) -> usize {
        self.0.local_size()
    }

    /// Whether this is rank 0, the one that writes files and reports progress.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Whether more than one process trains.
    pub fn is_distributed(&self) -> bool {
        self.size() > 1
    }

    /// See [`Communicator::start_sum_f32`].
    pub fn start_sum_f32(&self, send: Vec<f32>, recv: Vec<f32>, what: &str) -> Result<Box<dyn Pending>> {
        self.0.start_sum_f32(send, recv, what)
    }

    /// Sums `values` over the ranks in place.
    pub fn sum_f64(&self, values: &mut [f64], what: &str) -> Result<()> {
        self.0.sum_f64(values, what, Wait::Step)
    }

    /// Whether `flag` is set on any rank.
    pub fn any(&self, flag: bool, what: &str) -> Result<bool> {
        let mut v = [u64::from(flag)];
        self.0.max_u64(&mut v, what, Wait::Step)?;
        Ok(v[0] != 0)
    }

    /// Rank 0's `values` on every rank (the others' are ignored): for decisions that
    /// depend on something each rank measures differently, such as its clock.
    pub fn from_root_u64(&self, values: &mut [u64], what: &str) -> Result<()> {
        if !self.is_distributed() {
            return Ok(());
        }
        if !self.is_root() {
            values.fill(0);
        }
        // Every value but rank 0's is 0: the maximum is rank 0's.
        self.0.max_u64(values, what, Wait::Step)
    }

    /// Whether every rank holds the same `value` (the same answer on every rank).
    pub fn all_equal(&self, value: u64, what: &str) -> Result<bool> {
        // max(v) == min(v), and min(v) = !max(!v): one reduction.
        let mut v = [value, !value];
        self.0.max_u64(&mut v, what, Wait::Step)?;
        Ok(v[0] == !v[1])
    }

    /// Turns the outcomes of a step every rank takes (some perhaps failing) into one: when
    /// any rank failed, each failed rank returns its own error and the others
    /// [`Error::PeerFailed`], so that all stop at the same point and only a failed rank has
    /// something to say.
    pub fn agree<T>(&self, local: Result<T>, what: &str, wait: Wait) -> Result<T> {
        if !self.is_distributed() {
            return local;
        }
        let mut failed = [u64::from(local.is_err())];
        if let Err(e) = self.0.max_u64(&mut failed, what, wait) {
            return Err(local.err().unwrap_or(e));
        }
        match local {
            Err(e) => Err(e),
            Ok(_) if failed[0] != 0 => Err(Error::PeerFailed),
            ok => ok,
        }
    }

    /// Errors on every rank unless every rank holds the same `value`, a fingerprint of
    /// `what` (rank 0 says so, the others return [`Error::PeerFailed`]).
    pub fn check_same(&self, value: u64, what: &str) -> Result<()> {
        if !self.is_distributed() || self.all_equal(value, what)? {
            return Ok(());
        }
        if self.is_root() {
            return Err(Error::distributed(format!("the ranks disagree on {what}: every rank must see the same files and settings")));
        }
        Err(Error::PeerFailed)
    }

    /// Rank 0's `data` on every rank (`data` is only read on rank 0).
    pub fn broadcast_bytes(&self, data: Option<Vec<u8>>, what: &str) -> Result<Vec<u8>> {
        if !self.is_distributed() {
            return Ok(data.unwrap_or_default());
        }
        let mut buf = if self.is_root() { data.unwrap_or_default() } else { Vec::new() };
        let mut len = (buf.len() as u64).to_le_bytes();
        self.0.broadcast(&mut len, what)?;
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Error::distributed(format!("{what}: too large for this machine")))?;
        buf.resize(len, 0);
        for piece in buf.chunks_mut(BROADCAST_PIECE) {
            self.0.broadcast(piece, what)?;
        }
        Ok(buf)
    }

    /// Says, on every rank, which rank (the lowest) ended with its own error, if any; each
    /// rank calls it once at the end with `own_error` (a [`Error::PeerFailed`] is not one's
    /// own). A rank that failed alone waits at most `limit` for the others (they may be
    /// waiting for it in another operation); then the caller should [`Group::abort`].
    pub fn conclude(&self, own_error: bool, limit: Duration) -> Result<Option<usize>> {
        let value = if own_error { self.rank() as u64 } else { u64::MAX };
        let lowest = self.0.exit_min(value, limit)?;
        Ok((lowest != u64::MAX).then_some(lowest as usize))
    }

    /// See [`Communicator::set_interrupt`].
    pub fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        self.0.set_interrupt(flag)
    }

    /// Lets waits run to the communicator's time limit again after an interrupt, once every
    /// rank has agreed to stop (they are all alive: they just answered), so that the last
    /// checkpoint's agreement is not given up on while rank 0 writes it.
    pub fn clear_interrupt(&self) {
        self.0.set_interrupt(Arc::new(AtomicBool::new(false)))
    }

    /// Ends every rank of the job with exit status `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.0.abort(code)
    }
}
