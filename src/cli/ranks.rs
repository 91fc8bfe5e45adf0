//! How `convlm train` ends when it is one of several ranks (`mpirun -np N`): the ranks agree
//! on who failed, the lowest rank with an error of its own reports it (rank 0 says
//! everything else, and every rank its own account of the ranks at once), MPI is finalized,
//! and each rank exits with its status — or, when the others do not come to that agreement
//! (they wait for this rank elsewhere), the whole job is aborted, never left hanging. A rank
//! the launcher is about to kill says why it stops even when it cannot get here in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use convlm::dist::Group;
use convlm::run::CancelToken;

/// How long a rank that failed alone waits for the others to agree before it aborts the
/// job (they are most likely waiting for it in a training step).
const FAILED_ALONE: Duration = Duration::from_secs(10);

/// Whether an error is this rank's own (not the echo of another rank's failure).
fn own_error(e: &anyhow::Error) -> bool {
    !matches!(e.downcast_ref::<convlm::Error>(), Some(convlm::Error::PeerFailed))
}

/// Whether a rank says an error of its own at once, before the ranks agree who reports: rank
/// 0 always; another rank when the error is its own account of the ranks (a wait that timed
/// out or was stopped, its data differing from rank 0's…), which may be all there is to
/// learn of a rank cut off from the others, and which it may not live to say later (the
/// launcher kills it about a second after its SIGTERM).
fn says_at_once(rank: usize, e: &anyhow::Error) -> bool {
    rank == 0 || matches!(e.downcast_ref::<convlm::Error>(), Some(convlm::Error::Distributed(_)))
}

/// Ends this rank: see the module docs. `outcome` is the rank's result: `Ok(None)` done,
/// `Ok(Some(code))` stopped with that status after saying why (Ctrl-C), `Err` failed (rank 0
/// has not printed it yet).
pub fn end(group: Group, outcome: anyhow::Result<Option<i32>>) -> ! {
    ENDING.store(true, Ordering::SeqCst);
    let (rank, size) = (group.rank(), group.size());
    let own = outcome.as_ref().err().is_some_and(own_error);
    let said = match &outcome {
        Err(e) if own && says_at_once(rank, e) => {
            say(rank, size, e);
            true
        }
        _ => false,
    };
    let limit = if own { FAILED_ALONE } else { convlm::dist::timeout().unwrap_or(convlm::dist::DEFAULT_TIMEOUT) };
    match group.conclude(own, limit) {
        Ok(lowest) => {
            if let Err(e) = &outcome {
                if !said && own && lowest == Some(rank) {
                    say(rank, size, e);
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
                if !said {
                    say(rank, size, err);
                }
            }
            eprintln!("error ({}): {e}; ending the job", who(rank, size));
            group.abort(1)
        }
    }
}

/// Which rank speaks: its number and, for any but rank 0 (whose host the user launched
/// from), its host.
fn who(rank: usize, size: usize) -> String {
    match rank {
        0 => format!("rank 0 of {size}"),
        _ => format!("rank {rank} of {size} on {}", convlm::dist::host_name()),
    }
}

/// Whether this rank reached [`end`] (its outcome is known and said there), and whether it
/// printed its error (once: [`say`] may be called by the last-words thread too).
static ENDING: AtomicBool = AtomicBool::new(false);
static SAID: AtomicBool = AtomicBool::new(false);

/// Prints this rank's error, once: rank 0's plainly, the others' with who says it.
fn say(rank: usize, size: usize, e: &anyhow::Error) {
    if SAID.swap(true, Ordering::SeqCst) {
        return;
    }
    match rank {
        0 => eprintln!("error: {}", super::report(e)),
        _ => eprintln!("error ({}): {}", who(rank, size), super::report(e)),
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
/// as SIGTERM (and kills them a while later, `--mca odls_base_sigkill_timeout`). A rank
/// cancelled that has not reached [`end`] shortly before it would be killed says why it
/// stops all the same (see [`last_words`]).
pub fn cancel_on_sigterm(cancel: &CancelToken, group: &Group) -> anyhow::Result<()> {
    // Set once, before the handler is installed: the handler only reads it.
    let _ = ON_SIGTERM.set(cancel.clone());
    // SAFETY: `sigterm` is async-signal-safe: it loads an initialised OnceLock (an atomic
    // load) and stores an atomic flag; nothing allocates or locks.
    let previous = unsafe { libc::signal(libc::SIGTERM, sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    anyhow::ensure!(previous != libc::SIG_ERR, "installing the SIGTERM handler failed");
    // Not the group itself: its last handle, dropped at the end, finalizes MPI.
    let (cancel, rank, size) = (cancel.clone(), group.rank(), group.size());
    std::thread::Builder::new().name("last words".into()).spawn(move || last_words(&cancel, rank, size)).context("starting the last-words thread")?;
    Ok(())
}

/// How often the last-words thread looks at the cancel flag.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// How long after a signal the launcher kills a rank: `odls_base_sigkill_timeout` seconds
/// (OpenMPI passes `--mca` settings on to the ranks), 1 by default.
fn kill_delay() -> Duration {
    let secs = std::env::var("OMPI_MCA_odls_base_sigkill_timeout").ok().and_then(|v| v.trim().parse::<f64>().ok());
    Duration::from_secs_f64(secs.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(1.0))
}

/// Once the run is cancelled, waits three quarters of the launcher's kill delay and, if the
/// rank has not reached [`end`] by then, prints why it stops. The training thread says so
/// itself half a second after the signal when it waits for the other ranks; but OpenMPI's
/// TCP transport may keep it inside an MPI call (reporting a peer that hung up goes through
/// the launcher, which is busy ending the job), and a rank in a long computation reaches
/// no wait in time: without this it would be killed without a word.
fn last_words(cancel: &CancelToken, rank: usize, size: usize) {
    while !cancel.is_cancelled() {
        std::thread::sleep(LOOK_EVERY);
    }
    std::thread::sleep((kill_delay() * 3 / 4).saturating_sub(LOOK_EVERY));
    if !ENDING.load(Ordering::SeqCst) {
        let e = convlm::dist::stopped_by_signal(rank, size, convlm::dist::waiting_for().as_deref());
        say(rank, size, &e.into());
    }
}
