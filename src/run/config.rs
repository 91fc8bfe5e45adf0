//! The complete, serialisable description of a training run (`config.json` of a run
//! directory, or a TOML preset under `configs/`). Every field has a default, so a preset only
//! names what it changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{DatasetKind, Normalization, SplitMode, Splits, UnknownPolicy};
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::optim::{OptimizerConfig, ScheduleConfig};
use crate::tensor::{Device, Precision};

/// Which tokenizer a run builds from its corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// One token per character seen in the corpus.
    Char,
    /// Byte-level BPE trained on the corpus (`bpe_vocab_size` tokens).
    Bpe,
}

/// Where the text comes from and how it becomes examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// A text file or a folder of text files; `None` = the built-in English word list.
    pub path: Option<PathBuf>,
    /// lines (one example per line), stream (random windows) or grid (pixelcnn).
    pub kind: DatasetKind,
    /// char or bpe.
    pub tokenizer: TokenizerKind,
    /// A tokenizer.json to use as it is instead (either format; e.g. from `convlm tokenizer
    /// train`).
    pub tokenizer_file: Option<PathBuf>,
    /// Vocabulary size when training a BPE tokenizer.
    pub bpe_vocab_size: usize,
    /// Unknown characters at encode time: map to `<unk>` or reject.
    pub unknown: UnknownPolicy,
    /// Text normalisation (NFKC, lowercase, punctuation), off by default.
    pub normalization: Normalization,
    /// Drop duplicate lines (lines datasets).
    pub dedupe: bool,
    /// Longest allowed line in tokens (lines datasets).
    pub max_line_len: usize,
    /// Window length (stream datasets).
    pub block_size: usize,
    /// Grid width and height in tokens (grid datasets).
    pub grid_width: usize,
    pub grid_height: usize,
    /// Train/val/test fractions.
    pub splits: Splits,
    /// `dealt` (items dealt to the splits by the seed) or `tail` (train is the beginning of
    /// the data, val and test its end, as nanoGPT scores models).
    pub split: SplitMode,
    /// Read FIFOs and devices as data (refused otherwise: a FIFO without a writer blocks,
    /// `/dev/zero` never ends).
    pub allow_special_files: bool,
    /// The most bytes read from one such file.
    pub special_file_limit: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: None,
            kind: DatasetKind::Lines,
            tokenizer: TokenizerKind::Char,
            tokenizer_file: None,
            bpe_vocab_size: 5000,
            unknown: UnknownPolicy::MapToUnk,
            normalization: Normalization::default(),
            dedupe: false,
            max_line_len: 1000,
            block_size: 128,
            grid_width: 32,
            grid_height: 16,
            splits: Splits::default(),
            split: SplitMode::Dealt,
            allow_special_files: false,
            special_file_limit: 1 << 30,
        }
    }
}

/// How long and how to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps (ignored when `epochs` or `time_limit` is set).
    pub steps: u64,
    /// Train for this many seconds of wall-clock time instead of a number of steps (a number
    /// of seconds, or a string like "15m" or "1h30m"); the schedule is laid over the steps
    /// the budget allows.
    #[serde(deserialize_with = "crate::run::config::time_limit", skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
    /// Passes over the training split, converted to steps from its size.
    pub epochs: Option<f64>,
    /// Sequences per step.
    pub batch_size: usize,
    /// Clip the global gradient norm to this value.
    pub clip_grad: Option<f32>,
    /// Validate, print samples and keep the best model every this many steps.
    pub eval_every: u64,
    /// Batches of the validation split used per evaluation (0 = the whole split).
    pub eval_batches: usize,
    /// Samples printed at each evaluation.
    pub samples: usize,
    /// Save a resumable checkpoint every this many steps (0 = at evaluations only).
    pub checkpoint_every: u64,
    /// Worker threads (default: `CONVLM_THREADS` or every core).
    pub threads: Option<usize>,
    /// What the training step's matmuls and convolutions compute in: `fp32`, or `bf16`
    /// (bf16 inputs, fp32 accumulation, as torch.autocast; CPUs with AVX512_BF16).
    /// Parameters, optimizer state, checkpoints and evaluations stay fp32. Not written to
    /// config.json when fp32, so configs from before it keep their form and fingerprint.
    #[serde(skip_serializing_if = "is_fp32")]
    pub precision: Precision,
    /// Where the steps run: `cpu` (the default), `gpu` (the best adapter) or `gpu:N`. Not
    /// part of the run's identity: a run moves between devices on resume.
    #[serde(skip_serializing_if = "Device::is_cpu")]
    pub device: Device,
}

fn is_fp32(p: &Precision) -> bool {
    *p == Precision::Fp32
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            time_limit: None,
            epochs: None,
            batch_size: 32,
            clip_grad: Some(1.0),
            eval_every: 500,
            eval_batches: 20,
            samples: 5,
            checkpoint_every: 0,
            threads: None,
            precision: Precision::Fp32,
            device: Device::Cpu,
        }
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The model family and its hyper-parameters.
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    /// Seeds the initialisation, the split and the batch order.
    pub seed: u64,
}

impl Default for RunConfig {
    /// A small dilated CNN on lines of characters: trains in about a minute on two cores.
    fn default() -> Self {
        RunConfig {
            // `dilated` is a built-in family, so the lookup cannot fail.
            model: ModelConfig::new::<crate::models::Dilated>(crate::models::DilatedConfig {
                n_embd: 24,
                channels: 64,
                kernel_size: 2,
                dilations: vec![1, 2, 4, 8],
                activation: crate::tensor::Activation::Tanh,
                dropout: 0.0,
            })
            .expect("the dilated family is built in"),
            data: DataConfig::default(),
            train: TrainConfig::default(),
            optimizer: OptimizerConfig { lr: 3e-3, ..OptimizerConfig::default() },
            schedule: ScheduleConfig::default(),
            seed: 1337,
        }
    }
}

/// Longest run a step count may ask for (a year of the smallest model's steps): `--steps
/// 18446744073709551615` or `--epochs 1e12` is a mistake, not a plan.
pub const MAX_STEPS: u64 = 1_000_000_000;
/// Most samples drawn at each evaluation (`train.samples`).
pub const MAX_SAMPLES: usize = 1000;

impl RunConfig {
    /// Reads a TOML preset; errors name the file (and the TOML parser's line/column).
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(parse_preset(&text, path)?.config)
    }

    /// Checks every section; errors name the setting.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        self.data.splits.validate()?;
        if self.data.splits.train <= 0.0 {
            return Err(Error::config("splits", format!("the train fraction must be positive, got {}", self.data.splits)));
        }
        let t = &self.train;
        if t.batch_size == 0 {
            return Err(Error::config("batch-size", "must be at least 1"));
        }
        if t.epochs.is_none() && t.steps == 0 {
            return Err(Error::config("steps", "must be at least 1"));
        }
        if t.steps > MAX_STEPS {
            return Err(Error::config("steps", format!("{} is more than {MAX_STEPS} steps", t.steps)));
        }
        if t.samples > MAX_SAMPLES {
            return Err(Error::config("train.samples", format!("{} samples at every evaluation are more than {MAX_SAMPLES}", t.samples)));
        }
        if let Some(limit) = t.time_limit {
            crate::run::budget::parse_duration(&limit.to_string())?;
        }
        if let Some(e) = t.epochs {
            if !(e.is_finite() && e > 0.0) {
                return Err(Error::config("epochs", format!("must be a positive number, got {e}")));
            }
        }
        if let Some(c) = t.clip_grad {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::config("clip-grad", format!("must be a positive number, got {c}")));
            }
        }
        if t.eval_every == 0 {
            return Err(Error::config("eval-every", "must be at least 1"));
        }
        let grid_model = self.model.is_grid();
        let grid_data = self.data.kind == DatasetKind::Grid;
        if grid_model != grid_data {
            return Err(Error::config(
                "model",
                format!("family {} needs a {} dataset, not {:?}", self.model.family(), if grid_model { "grid" } else { "lines or stream" }, self.data.kind),
            ));
        }
        Ok(())
    }
}

/// Applies `key=value` overrides (dotted paths into the config, e.g. `model.channels=128`,
/// `train.batch_size=64`, `data.kind=stream`). Values parse as JSON when they can (numbers,
/// booleans, arrays) and as strings otherwise. Errors name the key (an unknown section) or
/// the overrides and what the resulting config lacks or cannot hold.
pub fn apply_overrides(config: &RunConfig, overrides: &[String]) -> Result<RunConfig> {
    let mut value = serde_json::to_value(config).map_err(|e| Error::config("config", e.to_string()))?;
    for item in overrides {
        let (key, raw) = item.split_once('=').ok_or_else(|| Error::config("set", format!("`{item}` is not KEY=VALUE")))?;
        let parsed: serde_json::Value = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
        let mut slot = &mut value;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let section = if i == 0 { "the config".to_string() } else { format!("`{}`", parts[..i].join(".")) };
            let obj = slot.as_object_mut().ok_or_else(|| Error::config("set", format!("`{key}`: {section} is a value, not a section with settings")))?;
            let last = i + 1 == parts.len();
            if !last && !obj.contains_key(*part) {
                let mut known: Vec<&str> = obj.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(Error::config("set", format!("`{key}`: {section} has no section `{part}` (it has: {})", known.join(", "))));
            }
            slot = obj.entry(part.to_string()).or_insert(serde_json::Value::Null);
        }
        *slot = parsed;
    }
    // Checked once all are in: settings that need each other (a schedule and its
    // parameters) can come in any order.
    serde_json::from_value(value).map_err(|e| Error::config("set", format!("`{}`: {e}", overrides.join(" "))))
}

/// The named presets shipped in `configs/` (compiled in, so they work from any folder).
pub const PRESETS: [(&str, &str); 9] = [
    ("names-mlp", include_str!("../../configs/names-mlp.toml")),
    ("names-dilated", include_str!("../../configs/names-dilated.toml")),
    ("names-hierarchical", include_str!("../../configs/names-hierarchical.toml")),
    ("names-best", include_str!("../../configs/names-best.toml")),
    ("shakespeare-cnn", include_str!("../../configs/shakespeare-cnn.toml")),
    ("shakespeare-hyena", include_str!("../../configs/shakespeare-hyena.toml")),
    ("shakespeare-best", include_str!("../../configs/shakespeare-best.toml")),
    ("reviews-bpe-cnn", include_str!("../../configs/reviews-bpe-cnn.toml")),
    ("reviews-best", include_str!("../../configs/reviews-best.toml")),
];

/// A preset: its settings, and what it was tuned on.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    pub config: RunConfig,
    /// The file name of the text a preset was tuned on (`tuned_on = "names.txt"` at the top of
    /// its TOML file): its settings (a time budget, dropout, a window) only make sense there,
    /// so `convlm train` asks for `--data` instead of training on the built-in word list.
    pub tuned_on: Option<String>,
}

/// Parses a preset's TOML text (`source` names it in errors).
fn parse_preset(text: &str, source: &Path) -> Result<Preset> {
    let invalid = |e: &dyn std::fmt::Display| Error::bad_file(source, format!("invalid preset: {e}"));
    let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(&e))?;
    let tuned_on = match table.remove("tuned_on") {
        None => return Ok(Preset { config: toml::from_str(text).map_err(|e| invalid(&e))?, tuned_on: None }),
        Some(toml::Value::String(name)) => Some(name),
        Some(other) => return Err(invalid(&format!("tuned_on must be a file name (a string), not {other}"))),
    };
    let config = toml::Value::Table(table).try_into().map_err(|e| invalid(&e))?;
    Ok(Preset { config, tuned_on })
}

/// Loads `--config`: a TOML file path, or the name of a built-in preset.
pub fn load_preset(name_or_path: &str) -> Result<RunConfig> {
    Ok(load_preset_info(name_or_path)?.config)
}

/// [`load_preset`] with what the preset was tuned on.
pub fn load_preset_info(name_or_path: &str) -> Result<Preset> {
    let (text, source) = preset_text(name_or_path)?;
    parse_preset(&text, &source)
}

/// Whether the preset `name_or_path` sets `data.kind` itself. One that does not leaves the
/// run the family's default kind, or a prepared corpus's own ([`crate::run::TrainFlags`]).
pub fn preset_sets_data_kind(name_or_path: &str) -> Result<bool> {
    let (text, source) = preset_text(name_or_path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| Error::bad_file(source, format!("invalid preset: {e}")))?;
    Ok(table.get("data").and_then(|d| d.get("kind")).is_some())
}

/// The TOML text of `--config` and the file it is known by in errors.
fn preset_text(name_or_path: &str) -> Result<(String, PathBuf)> {
    let path = Path::new(name_or_path);
    if path.is_file() {
        return Ok((std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?, path.to_path_buf()));
    }
    let stem = name_or_path.trim_end_matches(".toml");
    let stem = Path::new(stem).file_name().and_then(|s| s.to_str()).unwrap_or(stem);
    match PRESETS.iter().find(|(n, _)| *n == stem) {
        Some((n, text)) => Ok((text.to_string(), PathBuf::from(format!("configs/{n}.toml")))),
        None => Err(Error::config(
            "config",
            format!("`{name_or_path}` is neither a file nor a preset (presets: {})", PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")),
        )),
    }
}

/// Reads `train.time_limit`: seconds, or a duration string (`"15m"`).
fn time_limit<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Limit {
        Seconds(f64),
        Text(String),
    }
    match Option::<Limit>::deserialize(d)? {
        None => Ok(None),
        Some(Limit::Seconds(s)) => crate::run::budget::parse_duration(&s.to_string()).map(Some).map_err(serde::de::Error::custom),
        Some(Limit::Text(t)) => crate::run::budget::parse_duration(&t).map(Some).map_err(serde::de::Error::custom),
    }
}
