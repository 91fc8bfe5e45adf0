//! The run directory: what is written where, atomically, and how a run is loaded back.
//!
//! One checkpoint is one file: `optimizer.safetensors` holds the parameters, buffers and
//! optimizer moments, with the step and the batch-RNG position in its metadata, so a crash
//! at any instant leaves either the previous or the new checkpoint — never a mix.
//! `model.safetensors` (PyTorch state_dict names, loads with `strict=True`; the moving average
//! of the weights when the optimizer keeps one), `best.safetensors` and `state.json` are
//! written beside it for people and other tools.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::io::{decode_safetensors, load_safetensors, read_json, save_safetensors, write_json};
use crate::models::Model;
use crate::optim::Optimizer;
use crate::run::config::RunConfig;
use crate::tensor::Tensor;

/// File names inside a run directory.
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const CHECKPOINT_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.svg";

/// Prefix of model tensors inside the checkpoint file (optimizer tensors have their own).
const MODEL_PREFIX: &str = "model.";

/// Progress of a run, saved with every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Total steps the run was asked for.
    pub total_steps: u64,
    /// Seed and word position of the batch RNG (ChaCha8), for an exact resume.
    pub rng_seed: u64,
    pub rng_word_pos: String,
    /// Best validation loss so far and the step it was reached at.
    pub best_val_loss: Option<f64>,
    pub best_step: Option<u64>,
    /// Seconds spent in the training loop so far, over every session of the run.
    #[serde(default)]
    pub train_seconds: f64,
    /// The wall-clock budget of a time-limited run, in seconds ([`crate::run::budget`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<f64>,
    /// A time-limited run's projections of its total steps: `[from step, total]`, the
    /// total the learning-rate schedule used from that step on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule_plan: Vec<[u64; 2]>,
    /// The kernel choices the run computes with (measured on the CPU that started it,
    /// `run::tuning`); a resume installs them. Runs from before it have none and resume
    /// with the choice by CPU flags they trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<crate::tensor::tune::Tuning>,
}

impl TrainState {
    /// The state before the first of `total_steps` steps.
    pub fn start(total_steps: u64, rng_seed: u64, time_limit_s: Option<f64>) -> Self {
        TrainState {
            step: 0,
            total_steps,
            rng_seed,
            rng_word_pos: "0".into(),
            best_val_loss: None,
            best_step: None,
            train_seconds: 0.0,
            time_limit_s,
            schedule_plan: Vec::new(),
            tuning: None,
        }
    }

    /// The total steps the schedule lays itself over at `step`.
    pub fn schedule_total(&self, step: u64) -> u64 {
        crate::run::budget::schedule_total(&self.schedule_plan, step, self.total_steps)
    }
}

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A handle to `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file inside the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the directory (and parents).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))
    }

    /// Fails with a message naming the file when a required file is missing.
    pub fn require(&self, name: &str) -> Result<PathBuf> {
        let p = self.file(name);
        if !p.is_file() {
            return Err(Error::bad_file(&p, format!("missing from run directory {} (was the run trained to its first checkpoint?)", self.root.display())));
        }
        Ok(p)
    }

    /// Whether the run never reached a checkpoint: none of the files a checkpoint writes is
    /// there. Such a run (stopped by a crash or SIGTERM before its first checkpoint) resumes
    /// from step 0; a run with weights but without `optimizer.safetensors` lost its
    /// checkpoint, and resuming it from scratch would overwrite its weights.
    pub fn never_checkpointed(&self) -> bool {
        [CHECKPOINT_FILE, MODEL_FILE, BEST_FILE, STATE_FILE].iter().all(|f| !self.file(f).exists())
    }

    /// Deletes temporary files that a process killed in the middle of an atomic write left
    /// behind (`.<name>.<random>.tmp`, see [`crate::io::atomic_write`]); the files they were meant to
    /// replace are intact. Called when a run resumes; returns how many were removed.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        let mut removed = 0;
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(_) => return Ok(0),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE, BEST_FILE, CHECKPOINT_FILE, STATE_FILE, METRICS_FILE, PLOT_FILE]
                .iter()
                .any(|f| name.starts_with(&format!(".{f}.")) && name.ends_with(".tmp"));
            if ours && entry.path().is_file() {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes config.json and tokenizer.json (once, at the start of a run).
    pub fn save_setup(&self, config: &RunConfig, tokenizer: &Tokenizer) -> Result<()> {
        write_json(&self.file(CONFIG_FILE), config)?;
        tokenizer.save(&self.file(TOKENIZER_FILE))
    }

    /// Reads config.json and checks it as a fresh run's config is checked (a hand-edited
    /// `eval_every: 0` or `batch_size: 0` must be an error naming the file, not a panic).
    pub fn load_config(&self) -> Result<RunConfig> {
        let path = self.require(CONFIG_FILE)?;
        let config: RunConfig = read_json(&path)?;
        config.validate().map_err(|e| Error::bad_file(&path, e.to_string()))?;
        Ok(config)
    }

    /// Reads tokenizer.json.
    pub fn load_tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::load(&self.require(TOKENIZER_FILE)?)
    }

    /// Writes the model's state_dict to `name` (model.safetensors or best.safetensors); refuses
    /// (keeping the file on disk) when a value is not finite.
    pub fn save_weights(&self, name: &str, model: &Model, step: u64) -> Result<()> {
        let path = self.file(name);
        let tensors = model.state_dict();
        refuse_non_finite(&path, &tensors)?;
        save_safetensors(&path, &tensors, Some(model_metadata(model, step)))
    }

    /// Loads weights from `name` into a model built from the run's config and tokenizer,
    /// checking family and vocabulary size against the file's metadata.
    pub fn load_model(&self, name: &str, config: &RunConfig, tokenizer: &Tokenizer) -> Result<Model> {
        let path = self.require(name)?;
        let (tensors, meta) = load_safetensors(&path)?;
        check_metadata(&path, &meta, config, tokenizer)?;
        check_finite(&path, &tensors)?;
        let mut model = Model::new(&config.model, tokenizer.vocab_size(), config.seed)?;
        model.load_state_dict(tensors, &path)?;
        Ok(model)
    }

    /// Writes a resumable checkpoint: model, optimizer and state in one atomic file, then
    /// the exported model.safetensors and state.json. A value that is not finite writes
    /// nothing (an error naming the tensor): a good checkpoint is never replaced by a bad one.
    pub fn save_checkpoint(&self, model: &Model, optimizer: &Optimizer, state: &TrainState) -> Result<()> {
        let mut tensors: Vec<_> = model.state_dict().into_iter().map(|(n, t)| (format!("{MODEL_PREFIX}{n}"), t)).collect();
        tensors.extend(optimizer.state_tensors());
        refuse_non_finite(&self.file(CHECKPOINT_FILE), &tensors)?;
        let mut meta = model_metadata(model, state.step);
        let state_json = serde_json::to_string(state).map_err(|e| Error::config("state", e.to_string()))?;
        meta.insert("train_state".into(), state_json);
        meta.insert("optimizer_steps".into(), optimizer.steps_taken().to_string());
        save_safetensors(&self.file(CHECKPOINT_FILE), &tensors, Some(meta))?;
        if optimizer.averages() {
            // The exported model is the run's average; the live weights are in the checkpoint.
            let mut averaged = model.clone();
            optimizer.copy_averages_into(averaged.params_mut());
            self.save_weights(MODEL_FILE, &averaged, state.step)?;
        } else {
            self.save_weights(MODEL_FILE, model, state.step)?;
        }
        write_json(&self.file(STATE_FILE), state)
    }

    /// Loads the resumable checkpoint into `model` and `optimizer` and returns the state.
    pub fn load_checkpoint(&self, model: &mut Model, optimizer: &mut Optimizer, config: &RunConfig, tokenizer: &Tokenizer) -> Result<TrainState> {
        let bytes = self.read_checkpoint()?;
        self.load_checkpoint_from(&bytes, model, optimizer, config, tokenizer)
    }

    /// The bytes of the resumable checkpoint (an error naming it when it is missing).
    pub fn read_checkpoint(&self) -> Result<Vec<u8>> {
        let path = self.require(CHECKPOINT_FILE)?;
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    /// [`RunDir::load_checkpoint`] from the checkpoint's bytes, read by
    /// [`RunDir::read_checkpoint`] here or in another process.
    pub fn load_checkpoint_from(
        &self,
        bytes: &[u8],
        model: &mut Model,
        optimizer: &mut Optimizer,
        config: &RunConfig,
        tokenizer: &Tokenizer,
    ) -> Result<TrainState> {
        let path = self.file(CHECKPOINT_FILE);
        let (tensors, meta) = decode_safetensors(bytes, &path)?;
        check_metadata(&path, &meta, config, tokenizer)?;
        check_finite(&path, &tensors)?;
        let state: TrainState = meta
            .get("train_state")
            .ok_or_else(|| Error::bad_file(&path, "no train_state in metadata"))
            .and_then(|s| serde_json::from_str(s).map_err(|e| Error::bad_file(&path, format!("bad train_state: {e}"))))?;
        let steps: u64 = meta.get("optimizer_steps").and_then(|s| s.parse().ok()).ok_or_else(|| Error::bad_file(&path, "no optimizer_steps in metadata"))?;
        let (model_tensors, opt_tensors): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|(n, _)| n.starts_with(MODEL_PREFIX));
        let model_tensors = model_tensors.into_iter().map(|(n, t)| (n[MODEL_PREFIX.len()..].to_string(), t)).collect();
        model.load_state_dict(model_tensors, &path)?;
        optimizer.load_state(opt_tensors, steps, &path)?;
        Ok(state)
    }
}

/// The first value that is NaN or infinite: its tensor, index and value.
fn first_non_finite(tensors: &[(String, Tensor)]) -> Option<(&str, usize, f32)> {
    tensors.iter().find_map(|(name, t)| t.data().iter().position(|v| !v.is_finite()).map(|i| (name.as_str(), i, t.data()[i])))
}

/// Errors, naming the file and the tensor, when a loaded tensor holds NaN or ±inf: convlm
/// never writes one (see [`refuse_non_finite`]), so the file was damaged (random bytes
/// written into it, a file from before checksums) and resuming, sampling or scoring from it
/// would only spread the damage.
fn check_finite(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    match first_non_finite(tensors) {
        None => Ok(()),
        Some((name, i, v)) => {
            Err(Error::bad_file(path, format!("tensor `{name}` holds {v} at index {i}: the file is damaged (convlm never saves a value that is not finite)")))
        }
    }
}

/// Errors instead of writing a tensor file that holds NaN or ±inf: the file on disk (the
/// last good one) is kept.
fn refuse_non_finite(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    match first_non_finite(tensors) {
        None => Ok(()),
        Some((name, i, v)) => Err(Error::bad_file(path, format!("not written: tensor `{name}` holds {v} at index {i}; the file already there is kept"))),
    }
}

fn model_metadata(model: &Model, step: u64) -> HashMap<String, String> {
    HashMap::from([
        ("family".to_string(), model.config().family().to_string()),
        ("vocab_size".to_string(), model.vocab_size().to_string()),
        ("step".to_string(), step.to_string()),
    ])
}

/// Errors (naming the file) when a weights file was written for another family or another
/// vocabulary than the run's config and tokenizer.
fn check_metadata(path: &Path, meta: &HashMap<String, String>, config: &RunConfig, tokenizer: &Tokenizer) -> Result<()> {
    if let Some(f) = meta.get("family") {
        if f != config.model.family() {
            return Err(Error::bad_file(path, format!("holds a {f} model but config.json describes a {} model", config.model.family())));
        }
    }
    if let Some(v) = meta.get("vocab_size") {
        if v != &tokenizer.vocab_size().to_string() {
            return Err(Error::bad_file(path, format!("was trained with a vocabulary of {v} tokens but tokenizer.json has {}", tokenizer.vocab_size())));
        }
    }
    Ok(())
}
