//! How this process was started: alone, or by an MPI launcher (`mpirun`, `mpiexec`) as one
//! of several ranks, and the [`Group`] it trains in.

use std::time::Duration;

use super::group::Group;
use crate::error::{Error, Result};

/// Rank and size an MPI launcher gave this process (read from its environment, before and
/// without initialising MPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
}

/// Environment variables of the launchers: OpenMPI's, and the PMI ones of MPICH, Intel MPI
/// and MVAPICH (Hydra).
const LAUNCHERS: [(&str, &str); 2] = [("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"), ("PMI_SIZE", "PMI_RANK")];

/// How long a rank waits for the others by default (`CONVLM_MPI_TIMEOUT`, seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The rank and size an MPI launcher set, if one started this process.
pub fn launched() -> Option<Launch> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok());
    LAUNCHERS.iter().find_map(|&(size, rank)| Some(Launch { size: var(size)?, rank: var(rank).unwrap_or(0) }))
}

/// The time limit of a wait for the other ranks: `CONVLM_MPI_TIMEOUT` seconds, else
/// [`DEFAULT_TIMEOUT`].
pub fn timeout() -> Result<Duration> {
    match std::env::var("CONVLM_MPI_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(Error::config("CONVLM_MPI_TIMEOUT", format!("`{v}` is not a positive number of seconds"))),
        },
    }
}

/// Whether buckets start summing during the backward pass (`CONVLM_MPI_OVERLAP=0` waits for
/// the whole backward pass first; for measuring the all-reduce alone).
pub fn overlap() -> bool {
    std::env::var("CONVLM_MPI_OVERLAP").map_or(true, |v| v.trim() != "0")
}

/// This machine's name, for messages that say where a rank runs (`?` when the system does
/// not tell).
pub fn host_name() -> String {
    #[cfg(target_os = "linux")]
    {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes, the length passed; the name
        // is read only up to its terminator, within the buffer.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..len]).into_owned();
        }
    }
    std::env::var("HOSTNAME").unwrap_or_else(|_| "?".into())
}

/// What this process, a rank of an MPI job, waits for the other ranks in right now, if it
/// waits: for saying why it stops when the wait itself cannot return (a transport stuck
/// inside a call).
pub fn waiting_for() -> Option<String> {
    #[cfg(feature = "mpi")]
    {
        super::mpi::waiting_for()
    }
    #[cfg(not(feature = "mpi"))]
    {
        None
    }
}

/// Whether this build can train across processes (the `mpi` cargo feature).
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

/// The group this process trains in: the MPI job's ranks when an MPI launcher started more
/// than one process (initialising MPI: call it once, on the main thread, and keep the group
/// until the end), else this process alone. Without the `mpi` feature a multi-process
/// launch is an error naming the feature — N copies training alone into one folder would be
/// worse than nothing.
pub fn join() -> Result<Group> {
    match launched() {
        None => Ok(Group::single()),
        Some(l) if l.size <= 1 => Ok(Group::single()),
        Some(l) => join_mpi(l),
    }
}

#[cfg(feature = "mpi")]
fn join_mpi(_launch: Launch) -> Result<Group> {
    let comm = super::mpi::MpiComm::init(timeout()?)?;
    Ok(Group::new(std::sync::Arc::new(comm)))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi(launch: Launch) -> Result<Group> {
    Err(not_built(launch))
}

/// The error of a multi-process launch of a build without MPI.
pub fn not_built(launch: Launch) -> Error {
    Error::distributed(format!(
        "convlm was started by an MPI launcher as one of {} processes, but this build has no MPI support: build it with `cargo build --release --features mpi` (docs/distributed.md); without it each process would train alone",
        launch.size
    ))
}
