//! Layer 7: data-parallel training across processes and machines (docs/distributed.md).
//!
//! Every rank holds the whole model, draws the whole global batch from the same seeded
//! sampler and trains on its own rows of it ([`shard`]); the gradients are summed over the
//! ranks in buckets while the backward pass goes on ([`GradReducer`], [`Replica`]) and
//! scaled so that the result is the gradient of the global batch's mean loss; every rank
//! then takes the same optimizer step. The ranks talk through a [`Communicator`]: MPI
//! (cargo feature `mpi`), one process alone ([`Single`]), or threads of one process
//! ([`local_group`], for tests).

mod comm;
mod group;
mod launch;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod reduce;
mod replica;
mod shard;

pub use comm::{stopped_by_signal, Communicator, Pending, Single, Wait};
pub use group::Group;
pub use launch::{host_name, join, launched, not_built, overlap, timeout, waiting_for, Launch, DEFAULT_TIMEOUT, MPI_BUILT};
pub use local::local_group;
#[cfg(feature = "mpi")]
pub use mpi::MpiComm;
pub use reduce::{GradReducer, ReduceStats, BUCKET_BYTES};
pub use replica::Replica;
pub use shard::{check_batch_size, shard, shard_rows};
