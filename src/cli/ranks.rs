//! How `convlm train` ends when it is one of several ranks (`mpirun -np N`): the ranks agree
//! on who failed, the lowest rank with an error of its own reports it (rank 0 says
//! everything else), MPI is finalized, and each rank exits with its status — or, when the
//! others do not come to that agreement (they wait for this rank elsewhere), the whole job
//! is aborted, never left hanging.

use std::time::Duration;

use convlm::dist::Group;
use convlm::run::CancelToken;

/// How long a rank that failed alone waits for the others to agree before it aborts the
/// job (they are most likely waiting for it in a training step).
const FAILED_ALONE: Duration = Duration::from_secs(10);

/// Whether an error is this rank's own (not the echo of another rank's failure).
fn own_error(e: &anyhow::Error) -> bool {
    !matches!(e.downcast_ref::<convlm::Error>(), Some(convlm::Error::PeerFailed))
}

/// Ends this rank: see the module docs. `outcome` is the rank's result: `Ok(None)` done,
/// `Ok(Some(code))` stopped with that status after saying why (Ctrl-C), `Err` failed (rank 0
/// has not printed it yet).
pub fn end(group: Group, outcome: anyhow::Result<Option<i32>>) -> ! {
    let (rank, size) = (group.rank(), group.size());
    let own = outcome.as_ref().err().is_some_and(own_error);
    if rank == 0 && own {
        if let Err(e) = &outcome {
            eprintln!("error: {}", super::report(e));
        }
    }
    let limit = if own { FAILED_ALONE } else { convlm::dist::timeout().unwrap_or(convlm::dist::DEFAULT_TIMEOUT) };
    match group.conclude(own, limit) {
        Ok(lowest) => {
            if let Err(e) = &outcome {
                if rank != 0 && own && lowest == Some(rank) {
                    eprintln!("error (rank {rank} of {size}): {}", super::report(e));
                }
            }
            let code = match outcome {
                Ok(code) => code.unwrap_or(0),
                Err(_) => 1,
            };
            // Finalizes MPI.
            drop(group);
            std::process::exit(code)
        }
        Err(e) => {
            if let Err(err) = &outcome {
                if rank != 0 {
                    eprintln!("error (rank {rank} of {size}): {}", super::report(err));
                }
            }
            eprintln!("error (rank {rank} of {size}): {e}; ending the job");
            group.abort(1)
        }
    }
}

/// The token SIGTERM cancels.
static ON_SIGTERM: std::sync::OnceLock<CancelToken> = std::sync::OnceLock::new();

extern "C" fn sigterm(_: libc::c_int) {
    if let Some(token) = ON_SIGTERM.get() {
        token.cancel();
    }
}

/// Makes SIGTERM cancel the run like Ctrl-C: an MPI launcher passes Ctrl-C on to its ranks
/// as SIGTERM (and kills them a while later, `--mca odls_base_sigkill_timeout`).
pub fn cancel_on_sigterm(cancel: &CancelToken) -> anyhow::Result<()> {
    // Set once, before the handler is installed: the handler only reads it.
    let _ = ON_SIGTERM.set(cancel.clone());
    // SAFETY: `sigterm` is async-signal-safe: it loads an initialised OnceLock (an atomic
    // load) and stores an atomic flag; nothing allocates or locks.
    let previous = unsafe { libc::signal(libc::SIGTERM, sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    anyhow::ensure!(previous != libc::SIG_ERR, "installing the SIGTERM handler failed");
    Ok(())
}
