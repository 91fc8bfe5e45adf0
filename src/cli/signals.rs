//! How the binary answers signals.
//!
//! - Ctrl-C (SIGINT): `train`, `prepare`, `eval`, `sample` and `tokenizer train` install one
//!   handler that cancels the command's [`CancelToken`]; the library stops at its next unit of
//!   work (a step, a block of text, a batch, a token) and the command exits with 130. `train`
//!   saves a checkpoint first; the others have written nothing (a `prepare` leaves its
//!   unfinished folder, which is named as such). For the commands other than `train`, a second
//!   Ctrl-C exits at once. The quick commands (`summary`, `shape`, `plot`, `bench`) keep the
//!   default: SIGINT ends them.
//! - SIGPIPE: `train` keeps Rust's default (ignored), and prints through
//!   [`super::output`], which drops what cannot be written: a closed stdout or stderr
//!   (`convlm train … | head -2`) never stops a run. Every other command takes the Unix
//!   default back, so a reader that goes away (`convlm sample | head -1`) ends it quietly, as
//!   it ends `cat` or `grep`.

use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use convlm::CancelToken;

/// Exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;

/// The token the Ctrl-C handler cancels now, and whether a second Ctrl-C ends the process.
static CURRENT: Mutex<Option<(CancelToken, bool)>> = Mutex::new(None);

/// Whether the handler was installed (once a process: `cli::main` may run several times in
/// one, as the Python package runs it).
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Installs the Ctrl-C handler (once) and returns a new token it cancels. With
/// `force_on_second`, a second Ctrl-C ends the process at once (exit 130).
pub fn on_ctrl_c(force_on_second: bool) -> Result<CancelToken> {
    let cancel = CancelToken::new();
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some((cancel.clone(), force_on_second));
    let installed = INSTALLED.get_or_init(|| {
        ctrlc::set_handler(|| {
            // The handler runs on the ctrlc crate's own thread, not in signal context.
            let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((token, force_on_second)) = current {
                if token.is_cancelled() && force_on_second {
                    super::output::err("interrupted again: stopping at once");
                    std::process::exit(INTERRUPTED);
                }
                token.cancel();
            }
        })
        .map_err(|e| e.to_string())
    });
    installed.clone().map_err(anyhow::Error::msg).context("installing the Ctrl-C handler")?;
    Ok(cancel)
}

/// Restores the default action of SIGPIPE (end the process quietly), which Rust's runtime
/// sets to "ignore" before `main`.
// Called by the binary's `main` only: the Python package, which compiles `cli/` in, leaves
// SIGPIPE as Python has it.
#[allow(dead_code)]
pub fn default_sigpipe() {
    #[cfg(target_os = "linux")]
    // SAFETY: `signal` with a valid signal number and SIG_DFL only changes this process's
    // disposition; it is called on the main thread before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ignores SIGPIPE again (for `train`): a write to a closed pipe then fails with EPIPE, which
/// [`super::output`] drops.
pub fn ignore_sigpipe() {
    #[cfg(target_os = "linux")]
    // SAFETY: as in `default_sigpipe`; called before `train` starts any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
