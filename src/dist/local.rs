//! Ranks as threads of one process ([`local_group`]): the data-parallel code paths —
//! sharding, bucketed sums, agreements, shared evaluation — run in `cargo test` without
//! MPI. Sums are taken in rank order, so every rank gets the same bits, as from MPI.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::comm::{Communicator, Pending, Wait};
use super::group::Group;
use crate::error::{Error, Result};

/// `size` ranks in this process, one [`Group`] each (hand each to its own thread). An
/// operation that waits longer than `limit` for the others errors naming what it waited for.
pub fn local_group(size: usize, limit: Duration) -> Vec<Group> {
    let shared = Arc::new(Shared { size, limit, state: Mutex::new(HashMap::new()), arrived: Condvar::new() });
    (0..size)
        .map(|rank| {
            let state = RankState { shared: shared.clone(), rank, next: [AtomicU64::new(0), AtomicU64::new(0)], interrupt: Mutex::new(None) };
            Group::new(Arc::new(LocalRank(Arc::new(state))))
        })
        .collect()
}

/// One rank's contribution to an operation.
#[derive(Clone, Debug)]
enum Part {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U64(Vec<u64>),
    Bytes(Vec<u8>),
}

/// The contributions to one operation, by rank, and how many ranks have read the result.
#[derive(Debug)]
struct Slot {
    parts: Vec<Option<Part>>,
    read: usize,
}

/// Operations in flight, keyed by (channel, sequence number): the same operation has the
/// same number on every rank, as collectives are matched by order.
type Slots = HashMap<(usize, u64), Slot>;

#[derive(Debug)]
struct Shared {
    size: usize,
    limit: Duration,
    state: Mutex<Slots>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One rank of a local group (its state is shared with its sums in flight).
#[derive(Debug)]
struct LocalRank(Arc<RankState>);

#[derive(Debug)]
struct RankState {
    shared: Arc<Shared>,
    rank: usize,
    /// Next sequence number of the operation channel and of the exit channel.
    next: [AtomicU64; 2],
    interrupt: Mutex<Option<Arc<AtomicBool>>>,
}

const MAIN: usize = 0;
const EXIT: usize = 1;

impl RankState {
    /// Adds this rank's part to the next operation on `channel` and returns its key.
    fn deposit(&self, channel: usize, part: Part) -> (usize, u64) {
        let key = (channel, self.next[channel].fetch_add(1, Ordering::SeqCst));
        let mut slots = self.shared.lock();
        let slot = slots.entry(key).or_insert_with(|| Slot { parts: vec![None; self.shared.size], read: 0 });
        slot.parts[self.rank] = Some(part);
        drop(slots);
        self.shared.arrived.notify_all();
        key
    }

    fn complete(&self, key: (usize, u64)) -> bool {
        self.shared.lock().get(&key).is_some_and(|s| s.parts.iter().all(Option::is_some))
    }

    /// Every rank's part of operation `key`, in rank order, once all have arrived.
    fn collect(&self, key: (usize, u64), what: &str, limit: Option<Duration>) -> Result<Vec<Part>> {
        let start = Instant::now();
        let mut slots = self.shared.lock();
        loop {
            if let Some(slot) = slots.get_mut(&key).filter(|s| s.parts.iter().all(Option::is_some)) {
                let parts: Vec<Part> = slot.parts.iter().flatten().cloned().collect();
                slot.read += 1;
                if slot.read == self.shared.size {
                    slots.remove(&key);
                }
                return Ok(parts);
            }
            let interrupted = self.interrupt.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
            if interrupted {
                return Err(Error::distributed(format!("rank {} was interrupted while waiting for the other ranks in {what}", self.rank)));
            }
            if limit.is_some_and(|l| start.elapsed() > l) {
                return Err(Error::distributed(format!("rank {} waited more than {:?} for the other ranks in {what}", self.rank, limit.unwrap_or_default())));
            }
            slots = self.shared.arrived.wait_timeout(slots, Duration::from_millis(10)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

fn mismatch(what: &str) -> Error {
    Error::distributed(format!("{what}: the ranks called different operations"))
}

/// A sum of f32 vectors in flight on a [`LocalRank`].
struct LocalSum {
    comm: Arc<RankState>,
    key: (usize, u64),
    what: String,
    send: Vec<f32>,
    recv: Vec<f32>,
}

impl Pending for LocalSum {
    fn test(&mut self) -> Result<bool> {
        Ok(self.comm.complete(self.key))
    }

    fn wait(self: Box<Self>) -> Result<(Vec<f32>, Vec<f32>)> {
        let LocalSum { comm, key, what, send, mut recv } = *self;
        let parts = comm.collect(key, &what, Some(comm.shared.limit))?;
        recv.fill(0.0);
        for part in parts {
            let Part::F32(v) = part else { return Err(mismatch(&what)) };
            if v.len() != recv.len() {
                return Err(mismatch(&what));
            }
            recv.iter_mut().zip(&v).for_each(|(r, x)| *r += x);
        }
        Ok((send, recv))
    }
}

impl Communicator for LocalRank {
    fn rank(&self) -> usize {
        self.0.rank
    }

    fn size(&self) -> usize {
        self.0.shared.size
    }

    fn local_size(&self) -> usize {
        self.0.shared.size
    }

    fn start_sum_f32(&self, send: Vec<f32>, recv: Vec<f32>, what: &str) -> Result<Box<dyn Pending>> {
        let key = self.0.deposit(MAIN, Part::F32(send.clone()));
        Ok(Box::new(LocalSum { comm: self.0.clone(), key, what: what.to_string(), send, recv }))
    }

    fn sum_f64(&self, values: &mut [f64], what: &str, wait: Wait) -> Result<()> {
        let key = self.0.deposit(MAIN, Part::F64(values.to_vec()));
        let parts = self.0.collect(key, what, wait.limit(self.0.shared.limit))?;
        values.fill(0.0);
        for part in parts {
            let Part::F64(v) = part else { return Err(mismatch(what)) };
            values.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    fn max_u64(&self, values: &mut [u64], what: &str, wait: Wait) -> Result<()> {
        let key = self.0.deposit(MAIN, Part::U64(values.to_vec()));
        let parts = self.0.collect(key, what, wait.limit(self.0.shared.limit))?;
        for part in parts {
            let Part::U64(v) = part else { return Err(mismatch(what)) };
            values.iter_mut().zip(&v).for_each(|(a, &b)| *a = (*a).max(b));
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [u8], what: &str) -> Result<()> {
        let key = self.0.deposit(MAIN, Part::Bytes(if self.0.rank == 0 { buf.to_vec() } else { Vec::new() }));
        let parts = self.0.collect(key, what, Some(self.0.shared.limit))?;
        match parts.into_iter().next() {
            Some(Part::Bytes(root)) if root.len() == buf.len() => buf.copy_from_slice(&root),
            _ => return Err(mismatch(what)),
        }
        Ok(())
    }

    fn exit_min(&self, value: u64, limit: Duration) -> Result<u64> {
        let key = self.0.deposit(EXIT, Part::U64(vec![value]));
        let parts = self.0.collect(key, "the agreement on how the run ended", Some(limit))?;
        Ok(parts.iter().map(|p| if let Part::U64(v) = p { v[0] } else { u64::MAX }).min().unwrap_or(value))
    }

    fn set_interrupt(&self, flag: Arc<AtomicBool>) {
        *self.0.interrupt.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag);
    }

    fn abort(&self, code: i32) -> ! {
        panic!("rank {} aborted the local group with status {code}", self.0.rank)
    }
}
