//! Exclusive advisory locks on folders: a process that writes a run or a prepared corpus
//! holds the lock on the folder's `.convlm.lock` for as long as it writes, so a second writer
//! is refused at once instead of interleaving its files with the first one's.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// The lock file inside a locked folder (never replaced, so a lock on it is a lock on the
/// folder; hidden, so corpus readers skip it).
pub const LOCK_FILE: &str = ".convlm.lock";

/// An exclusive lock on a folder, held until dropped.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Takes the lock of `dir` (creating the folder if needed): `Ok(None)` when another process
/// holds it.
pub fn try_lock_folder(dir: &Path) -> Result<Option<FolderLock>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FolderLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Whether another process holds the lock of `dir` now. Writes nothing: a folder without a
/// lock file is not locked.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("new");
        let first = try_lock_folder(&folder).unwrap().expect("free");
        assert!(folder.join(LOCK_FILE).is_file());
        assert!(try_lock_folder(&folder).unwrap().is_none(), "held");
        assert!(is_locked(&folder), "held, seen from another handle");
        drop(first);
        assert!(!is_locked(&folder), "released");
        assert!(try_lock_folder(&folder).unwrap().is_some(), "released");
        let never = dir.path().join("never");
        assert!(!is_locked(&never) && !never.exists(), "asking wrote nothing");
    }
}
