//! Who writes a corpus folder: `convlm prepare` claims its `--out` as `train` claims a run
//! folder — refused when it holds someone else's files or a finished corpus (unless
//! replacing it is asked for), and locked while the corpus is written, so two prepares into
//! the same folder never mix their files: the second is refused at once.

use std::path::Path;

use super::names::{corpus_state, holds_only_corpus_files, is_empty_folder, CorpusState};
use crate::io::{is_locked, try_lock_folder, FolderLock};
use crate::{Error, Result};

/// The lock of a corpus folder being written, held until dropped.
#[derive(Debug)]
pub struct CorpusLock {
    _lock: FolderLock,
}

/// Claims `out` for a new corpus: refuses a folder of other files, and a finished corpus
/// unless `replace`; the leftovers of an interrupted prepare are written over. Checked
/// before anything is written (not even the lock file) and again under the lock.
pub fn claim_corpus_folder(out: &Path, replace: bool) -> Result<CorpusLock> {
    if check_free(out, replace).is_err() {
        // A prepare still writing there has files of its own (its temporaries): that it is in
        // use is what to say. One that finished meanwhile is judged by what it left.
        if is_locked(out) {
            return Err(in_use(out));
        }
        check_free(out, replace)?;
    }
    let lock = try_lock_folder(out)?.ok_or_else(|| in_use(out))?;
    // Another prepare may have finished there between the check and the lock.
    check_free(out, replace)?;
    Ok(CorpusLock { _lock: lock })
}

fn in_use(out: &Path) -> Error {
    Error::bad_file(out, "is in use: another convlm prepare is writing a corpus there (it holds .convlm.lock); wait for it, or choose another --out")
}

fn check_free(out: &Path, replace: bool) -> Result<()> {
    if is_empty_folder(out) {
        return Ok(());
    }
    match corpus_state(out) {
        // The leftovers of an interrupted prepare are written over: they hold nothing.
        CorpusState::Unfinished if holds_only_corpus_files(out) => Ok(()),
        CorpusState::Finished if replace && holds_only_corpus_files(out) => Ok(()),
        CorpusState::Finished if holds_only_corpus_files(out) => {
            Err(Error::bad_file(out, "already holds a prepared corpus: pass --force to replace it, or choose another --out"))
        }
        _ => Err(Error::bad_file(out, "is not empty and holds more than a prepared corpus: choose another --out")),
    }
}
