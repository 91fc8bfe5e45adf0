//! What data-parallel training asks of the processes it runs on ([`Communicator`]), and the
//! one-process implementation every run without MPI uses ([`Single`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long a collective operation may wait for the other ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The communicator's time limit (a step's operations: the others are a step behind
    /// at most).
    Step,
    /// No limit: the other ranks may be preparing a corpus, which takes as long as it takes.
    Unbounded,
}

impl Wait {
    /// The wait's limit, given the communicator's time limit for a step.
    pub fn limit(self, step_limit: Duration) -> Option<Duration> {
        (self == Wait::Step).then_some(step_limit)
    }
}

/// A sum over the ranks in flight. Its buffers belong to it until it completes; dropping
/// it unfinished leaks them rather than free memory the transport may still write.
pub trait Pending: Send {
    /// Advances the operation (transports that progress only inside library calls need
    /// these calls); true once the sum is in the receive buffer.
    fn test(&mut self) -> Result<bool>;
    /// Waits for the operation and returns its (send, receive) buffers, the receive buffer
    /// holding the sum.
    fn wait(self: Box<Self>) -> Result<(Vec<f32>, Vec<f32>)>;
}

/// The processes ("ranks") that train one model together. Every rank calls the same
/// operations in the same order; each operation returns on every rank with the same
/// result, or errors (a time-out, an interrupt, a transport error) naming `what` waited.
pub trait Communicator: Send + Sync + std::fmt::Debug {
    /// This process's number, 0 ≤ rank < size.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Ranks on this machine, this one included (they share its cores and memory).
    fn local_size(&self) -> usize {
        1
    }
    /// Starts summing `send` over the ranks into `recv` (same length on every rank). The
    /// sum is the same, bit for bit, on every rank.
    fn start_sum_f32(&self, send: Vec<f32>, recv: Vec<f32>, what: &str) -> Result<Box<dyn Pending>>;
    /// Replaces `values` by their sums over the ranks.
    fn sum_f64(&self, values: &mut [f64], what: &str, wait: Wait) -> Result<()>;
    /// Replaces `values` by their maxima over the ranks.
    fn max_u64(&self, values: &mut [u64], what: &str, wait: Wait) -> Result<()>;
    /// Copies rank 0's `buf` into every rank's `buf` (same length on every rank).
    fn broadcast(&self, buf: &mut [u8], what: &str) -> Result<()>;
    /// The minimum of `value` over the ranks, on a channel of its own: callable when a rank
    /// left the others in the middle of another operation (a failed rank's last message),
    /// waiting at most `limit`.
    fn exit_min(&self, value: u64, limit: Duration) -> Result<u64>;
    /// A flag that, once set (Ctrl-C, SIGTERM from the launcher), makes a wait for the other
    /// ranks give up soon with an error instead of waiting for ranks that may be gone.
    fn set_interrupt(&self, _flag: Arc<AtomicBool>) {}
    /// Ends every rank of the job at once with exit status `code`.
    fn abort(&self, code: i32) -> !;
}

/// The error of rank `rank` of `size` stopped by a signal (Ctrl-C, or the launcher ending the
/// job because a rank died), while waiting for the others in `waiting_for` if it was.
pub fn stopped_by_signal(rank: usize, size: usize, waiting_for: Option<&str>) -> Error {
    let while_ = waiting_for.map(|what| format!(" while waiting for the other ranks in {what}")).unwrap_or_default();
    Error::distributed(format!("rank {rank} of {size} was stopped by a signal{while_} (a rank died, or the job was interrupted)"))
}

/// One process alone: every operation returns its input.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

/// A finished sum of one rank: the send buffer copied into the receive buffer.
struct Done(Vec<f32>, Vec<f32>);

impl Pending for Done {
    fn test(&mut self) -> Result<bool> {
        Ok(true)
    }
    fn wait(self: Box<Self>) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.0, self.1))
    }
}

impl Communicator for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn start_sum_f32(&self, send: Vec<f32>, mut recv: Vec<f32>, _what: &str) -> Result<Box<dyn Pending>> {
        recv.copy_from_slice(&send);
        Ok(Box::new(Done(send, recv)))
    }
    fn sum_f64(&self, _values: &mut [f64], _what: &str, _wait: Wait) -> Result<()> {
        Ok(())
    }
    fn max_u64(&self, _values: &mut [u64], _what: &str, _wait: Wait) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _buf: &mut [u8], _what: &str) -> Result<()> {
        Ok(())
    }
    fn exit_min(&self, value: u64, _limit: Duration) -> Result<u64> {
        Ok(value)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
