//! Who owns a run directory, and whether its files still belong together.
//!
//! A run directory is claimed by a marker file, `run.json`, written before anything else:
//! `train` refuses a non-empty folder without one (someone else's files), and an existing run
//! unless it resumes it or is told to move it aside (`--force`: the old directory is renamed,
//! never deleted). While a process writes a run it holds an advisory lock on `.convlm.lock`,
//! so a second writer gets an error at once instead of interleaving its files.
//!
//! `run.json` also records fingerprints: hashes of `config.json` and `tokenizer.json` as
//! written, and the corpus's files (names, sizes, content hashes). `--resume`, `eval` and
//! `sample` compare them with what they find, so a swapped tokenizer, another run's config or
//! a changed data file is a named error rather than a silently wrong result.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::SourceFingerprint;
use crate::error::{Error, Result};
use crate::io::{is_locked, read_json, try_lock_folder, write_json, FolderLock};
use crate::run::checkpoint::{RunDir, CHECKPOINT_FILE, CONFIG_FILE, TOKENIZER_FILE};
use crate::run::config::RunConfig;

/// The marker file that makes a folder a convlm run.
pub const MARKER_FILE: &str = "run.json";
/// The advisory lock file (never replaced, so a lock on it is a lock on the run).
pub use crate::io::LOCK_FILE;
/// `format` value of a marker file.
const FORMAT: &str = "convlm-run";

/// The content of `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Always `convlm-run`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// When the run was created (seconds since the Unix epoch).
    pub created: u64,
    /// Hashes of the run's setup, once it is written.
    pub fingerprints: Option<Fingerprints>,
}

impl RunManifest {
    /// The marker of a new run, with a fresh random id and no fingerprints yet.
    pub fn new() -> Self {
        RunManifest { format: FORMAT.into(), version: 1, created: now(), fingerprints: None }
    }
}

impl Default for RunManifest {
    fn default() -> Self {
        Self::new()
    }
}

/// What a run was set up with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// XXH3-64 of the run's config without the settings that name places or the machine
    /// (`data.path`, `data.tokenizer_file`, `train.threads`), hex: moving the data and
    /// pointing config.json at its new place is fine (the data fingerprint checks it is the
    /// same text); any other edit is another run's config.
    pub config: String,
    /// XXH3-64 of `tokenizer.json` as written, hex.
    pub tokenizer: String,
    /// The corpus's files.
    pub data: SourceFingerprint,
}

/// An exclusive advisory lock on a run directory, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _lock: FolderLock,
}

/// What a `--out` folder holds.
#[derive(Debug)]
pub enum DirState {
    /// Nothing there yet.
    Missing,
    /// A folder with nothing in it (but perhaps the lock file).
    Empty,
    /// A convlm run with its marker.
    Run(RunManifest),
    /// A run written before runs had markers (it has a checkpoint).
    Legacy,
    /// Other files: the first few names.
    Other(Vec<String>),
}

/// Checks that a command other than `train` may write the file `path` (`tokenizer train
/// --out`): not into a run folder or a prepared corpus (their `tokenizer.json` belongs with
/// their weights or token ids: another would break them silently), not over a folder, and not
/// over an existing file unless `force`. `flag` names the flag in errors.
pub fn check_writable_file(path: &Path, force: bool, flag: &str) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let inside = match RunDir::new(parent).dir_state() {
        Ok(DirState::Run(_) | DirState::Legacy) => Some("a convlm run"),
        _ if crate::data::corpus_state(parent) != crate::data::CorpusState::NotACorpus => Some("a prepared corpus"),
        _ => None,
    };
    if let Some(what) = inside {
        return Err(Error::config(
            flag,
            format!("{} is inside {what} ({}): its files belong together and are never replaced; write elsewhere", path.display(), parent.display()),
        ));
    }
    if path.is_dir() {
        return Err(Error::config(flag, format!("{} is a folder: give a file name (e.g. {})", path.display(), path.join("tokenizer.json").display())));
    }
    if path.exists() && !force {
        return Err(Error::config(flag, format!("{} already exists: pass --force to replace it, or choose another file", path.display())));
    }
    Ok(())
}

/// XXH3-64 of a file's bytes, hex.
pub fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

/// The fingerprint of a run's config (see [`Fingerprints::config`]).
pub fn config_hash(config: &RunConfig) -> Result<String> {
    let mut c = config.clone();
    (c.data.path, c.data.tokenizer_file, c.train.threads) = (None, None, None);
    c.train.device = crate::tensor::Device::Cpu;
    let bytes = serde_json::to_vec(&c).map_err(|e| Error::config("config", e.to_string()))?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl RunDir {
    /// What the directory holds.
    pub fn dir_state(&self) -> Result<DirState> {
        let root = self.root();
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Missing),
            Err(e) => return Err(Error::io(root, e)),
        };
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != LOCK_FILE).collect();
        names.sort();
        if names.is_empty() {
            return Ok(DirState::Empty);
        }
        if names.iter().any(|n| n == MARKER_FILE) {
            let manifest: RunManifest = read_json(&self.file(MARKER_FILE))?;
            if manifest.format != FORMAT {
                return Err(Error::bad_file(self.file(MARKER_FILE), format!("not a convlm run marker (format `{}`)", manifest.format)));
            }
            return Ok(DirState::Run(manifest));
        }
        if names.iter().any(|n| n == CHECKPOINT_FILE) && names.iter().any(|n| n == CONFIG_FILE) {
            return Ok(DirState::Legacy);
        }
        names.truncate(5);
        Ok(DirState::Other(names))
    }

    /// Takes the directory's lock (creating the directory if needed); errors at once when
    /// another process holds it.
    pub fn lock(&self) -> Result<RunLock> {
        match try_lock_folder(self.root())? {
            Some(lock) => Ok(RunLock { _lock: lock }),
            None => Err(self.in_use()),
        }
    }

    fn in_use(&self) -> Error {
        Error::run_dir(self.root(), "is in use: another convlm process is writing this run (it holds .convlm.lock); wait for it or choose another --out")
    }

    /// Claims the directory for a new run: refuses someone else's files and an existing run
    /// (unless `force`, which renames whatever is there to `<dir>.old-N` and returns that
    /// name), then writes a fresh marker. The returned lock must be held for the whole run.
    pub fn claim(&self, force: bool) -> Result<(RunLock, RunManifest, Option<PathBuf>)> {
        let mut moved = None;
        // Refuse before writing anything (not even the lock file) into someone else's folder;
        // with `force`, move someone else's files aside as they are.
        match self.dir_state()? {
            // A folder whose lock another process holds is in use, whatever it holds so far
            // (a run starting there has written its marker, or not yet).
            _ if !force && is_locked(self.root()) => return Err(self.in_use()),
            state @ (DirState::Other(_) | DirState::Run(_) | DirState::Legacy) if !force => self.refuse_unless_free(state)?,
            DirState::Other(_) => moved = Some(self.move_aside()?),
            _ => {}
        }
        let lock = self.lock()?;
        // Check again under the lock, in case another process claimed the folder meanwhile.
        let lock = match self.dir_state()? {
            DirState::Missing | DirState::Empty => lock,
            state if !force => {
                self.refuse_unless_free(state)?;
                lock
            }
            _ => {
                // An old run is moved while we hold its lock, so no writer is moved.
                moved = Some(self.move_aside()?);
                drop(lock);
                self.lock()?
            }
        };
        let manifest = RunManifest::new();
        write_json(&self.file(MARKER_FILE), &manifest)?;
        Ok((lock, manifest, moved))
    }

    /// Renames the directory to the first free `<dir>.old-N` and returns that name.
    fn move_aside(&self) -> Result<PathBuf> {
        let root = self.root();
        let aside = (1..).map(|n| PathBuf::from(format!("{}.old-{n}", root.display()))).find(|p| !p.exists()).unwrap_or_default();
        std::fs::rename(root, &aside).map_err(|e| Error::io(root, e))?;
        Ok(aside)
    }

    /// Errors unless `state` is a folder a new run may take (missing or empty).
    fn refuse_unless_free(&self, state: DirState) -> Result<()> {
        match state {
            DirState::Missing | DirState::Empty => Ok(()),
            DirState::Run(_) | DirState::Legacy => Err(Error::run_dir(
                self.root(),
                "already holds a run: pass --resume to continue it, --force to move it aside and start a new one, or choose another --out",
            )),
            DirState::Other(names) => Err(Error::run_dir(
                self.root(),
                format!(
                    "is not empty and is not a convlm run (it holds {}{}, and no {MARKER_FILE}): choose another --out, or pass --force to move the folder aside",
                    names.join(", "),
                    if names.len() == 5 { ", …" } else { "" }
                ),
            )),
        }
    }

    /// Errors unless the directory holds a run (with its marker, or from before markers).
    pub fn require_run(&self) -> Result<()> {
        match self.dir_state()? {
            DirState::Run(_) | DirState::Legacy => Ok(()),
            DirState::Missing | DirState::Empty => {
                Err(Error::run_dir(self.root(), "holds no run to resume (no run.json or checkpoint): start one without --resume"))
            }
            DirState::Other(_) => Err(Error::run_dir(self.root(), "is not a convlm run (no run.json or checkpoint): nothing to resume")),
        }
    }

    /// Opens an existing run to continue it: takes its lock and returns its marker (`None` for
    /// a run from before markers, which then gets one).
    pub fn open_for_resume(&self) -> Result<(RunLock, Option<RunManifest>)> {
        self.require_run()?;
        let lock = self.lock()?;
        match self.dir_state()? {
            DirState::Run(m) => Ok((lock, Some(m))),
            DirState::Legacy => Ok((lock, None)),
            _ => Err(Error::run_dir(self.root(), "is not a convlm run (no run.json or checkpoint): nothing to resume")),
        }
    }

    /// The run's marker, `None` for a run from before markers.
    pub fn manifest(&self) -> Result<Option<RunManifest>> {
        match self.dir_state()? {
            DirState::Run(m) => Ok(Some(m)),
            _ => Ok(None),
        }
    }

    /// Records the fingerprints of the setup just written (`config`, tokenizer.json and the
    /// corpus) in the marker.
    pub fn record_fingerprints(&self, manifest: &mut RunManifest, config: &RunConfig, data: SourceFingerprint) -> Result<()> {
        manifest.fingerprints = Some(Fingerprints { config: config_hash(config)?, tokenizer: file_hash(&self.require(TOKENIZER_FILE)?)?, data });
        write_json(&self.file(MARKER_FILE), manifest)
    }

    /// Checks that `config` (read from config.json) and tokenizer.json are the ones the run
    /// was set up with. Callers load the weights first, so a config or tokenizer that does
    /// not even fit them is reported by the weights' own checks.
    pub fn check_setup(&self, manifest: &RunManifest, config: &RunConfig) -> Result<()> {
        let Some(fp) = &manifest.fingerprints else { return Ok(()) };
        if config_hash(config)? != fp.config {
            return Err(Error::bad_file(
                self.file(CONFIG_FILE),
                "is not the config this run was started with (edited, or copied from another run; only data.path may move): restore it, or start a new run",
            ));
        }
        if file_hash(&self.require(TOKENIZER_FILE)?)? != fp.tokenizer {
            return Err(Error::bad_file(
                self.file(TOKENIZER_FILE),
                "is not the tokenizer this run was trained with (replaced or edited): the model's token ids would mean other text; restore it",
            ));
        }
        Ok(())
    }

    /// Checks that the corpus is the one the run was trained on; `allow` turns a difference
    /// into `Ok(Some(what changed))` for the caller to warn about.
    pub fn check_data(&self, manifest: &RunManifest, now: &SourceFingerprint, allow: bool) -> Result<Option<String>> {
        let Some(fp) = &manifest.fingerprints else { return Ok(None) };
        match fp.data.differences(now) {
            None => Ok(None),
            Some(what) if allow => Ok(Some(format!("the data changed since training ({what})"))),
            Some(what) => Err(Error::run_dir(
                self.root(),
                format!("the data changed since this run was trained ({what}): pass --allow-data-change to use it anyway, or restore the data"),
            )),
        }
    }
}
