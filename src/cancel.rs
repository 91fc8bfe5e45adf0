//! [`CancelToken`], the flag a caller sets to stop long work (a Ctrl-C handler,
//! another thread, a notebook's interrupt). Every layer that loops for long — reading a
//! corpus, training a tokenizer, evaluating, generating, training — checks it between units
//! of work and stops with [`Error::Cancelled`](crate::Error::Cancelled) (training:
//! [`Error::Interrupted`](crate::Error::Interrupted), after saving a checkpoint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A flag shared between long work and whoever may stop it. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the work to stop (safe from a signal handler: one atomic store).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Clears a cancel that was acted on, so the work it stopped may go on (a
    /// [`Trainer`](crate::run::Trainer) does this once it has saved its checkpoint).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called (and not [reset](CancelToken::reset) since).
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Error::Cancelled)` once cancelled: `token.check()?` between units of work.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The flag itself, for code that must notice a cancel while it waits (a data-parallel
    /// run's wait for the other ranks).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_check_says_cancelled() {
        let token = CancelToken::new();
        let other = token.clone();
        assert!(token.check().is_ok());
        other.cancel();
        assert!(token.is_cancelled());
        assert!(matches!(token.check(), Err(Error::Cancelled)));
    }
}
