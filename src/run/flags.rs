//! What the flags of `convlm train` ask of a run ([`TrainFlags`]), read the same way by
//! every front end — the command line and the Python package — so that the same arguments
//! make the same config, with the same checks and the same messages.

use std::path::PathBuf;

use crate::data::{is_corpus, read_corpus_meta, DatasetKind};
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::optim::OptimizerKind;
use crate::run::checkpoint::RunDir;
use crate::run::config::{apply_overrides, load_preset, load_preset_info, preset_sets_data_kind, RunConfig, TokenizerKind};
use crate::run::session::ResumeOptions;
use crate::tensor::{Device, Precision};

/// The settings of `convlm train`, each `None` (or empty) when not given.
#[derive(Clone, Debug, Default)]
pub struct TrainFlags {
    /// Training text: a file, or a folder read recursively (default: the built-in word list).
    pub data: Option<PathBuf>,
    /// The run folder (default for a new run: `runs/<family>`, see [`TrainFlags::out_dir`]).
    pub out: Option<PathBuf>,
    /// A model family, replacing the preset's model with the family's defaults.
    pub model: Option<String>,
    /// A preset name or a TOML file.
    pub config: Option<String>,
    pub dataset: Option<DatasetKind>,
    /// `char`, `bpe`, or a tokenizer.json file.
    pub tokenizer: Option<String>,
    pub steps: Option<u64>,
    pub epochs: Option<f64>,
    /// Seconds (see [`crate::run::budget::parse_duration`]).
    pub time_limit: Option<f64>,
    pub batch_size: Option<usize>,
    pub lr: Option<f32>,
    pub optimizer: Option<OptimizerKind>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
    /// Decay of the moving average of the weights (0: none).
    pub ema_decay: Option<f32>,
    /// `constant`, `step`, `onecycle` or `cosine`.
    pub schedule: Option<String>,
    pub warmup: Option<u64>,
    /// 0 turns clipping off.
    pub clip_grad: Option<f32>,
    pub eval_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    pub seed: Option<u64>,
    pub threads: Option<usize>,
    /// What matmuls and convolutions compute in (`train.precision`).
    pub precision: Option<Precision>,
    /// `cpu`, `gpu` or `gpu:N` (not part of a run's identity: a run resumes on either).
    pub device: Option<Device>,
    /// Continue the run in `out` from its last checkpoint.
    pub resume: bool,
    /// A new run moves what `out` holds aside instead of refusing.
    pub force: bool,
    /// A resumed run goes on although its data files changed.
    pub allow_data_change: bool,
    /// `KEY=VALUE` settings (`--set`), applied after everything else.
    pub set: Vec<String>,
}

/// Settings that a resumed run may change (how far it goes, and what changes no result).
const RESUMABLE: [&str; 6] = ["train.steps", "train.epochs", "train.time_limit", "train.threads", "train.checkpoint_every", "train.device"];

impl TrainFlags {
    /// The config of a new run: the preset (or the defaults), then the flags (flags win). A
    /// preset tuned on a file (`tuned_on`) needs `data`: it would train on the built-in word
    /// list otherwise.
    ///
    /// A prepared corpus given as `--data` lends the run its kind (stream, lines or grid)
    /// unless one is asked for: by `--dataset`, `--set data.kind=...` or a preset that sets
    /// `data.kind`. A kind asked for that differs from the corpus's is an error when the data
    /// is opened.
    pub fn new_config(&self) -> Result<RunConfig> {
        self.check_exclusive()?;
        let (base, kind_set) = match &self.config {
            Some(p) => {
                let preset = load_preset_info(p)?;
                if let (Some(text), None) = (&preset.tuned_on, &self.data) {
                    return Err(Error::config(
                        "data",
                        format!("--config {p} was tuned on {text}: pass --data with that file (or with other text, to train on it), instead of training on the built-in word list"),
                    ));
                }
                (preset.config, preset_sets_data_kind(p)?)
            }
            None => (RunConfig::default(), false),
        };
        self.config_from(base, kind_set)
    }

    /// `base` with the flags applied ([`TrainFlags::apply`]), then the kind of a prepared
    /// corpus when neither `base` (`base_sets_kind`) nor the flags ask for one.
    fn config_from(&self, base: RunConfig, base_sets_kind: bool) -> Result<RunConfig> {
        let new_family = self.model.as_deref().is_some_and(|m| m != base.model.family());
        let base_kind = base.data.kind;
        let c = self.apply(base)?;
        // A new family that moves between grid and sequence data replaces the base's kind.
        let kind_replaced = new_family && (c.model.is_grid() || base_kind == DatasetKind::Grid);
        let flags_set_kind = self.dataset.is_some() || self.set.iter().any(|s| s.split_once('=').is_some_and(|(k, _)| k == "data.kind"));
        if flags_set_kind || (base_sets_kind && !kind_replaced) {
            return Ok(c);
        }
        take_corpus_kind(c)
    }

    /// `e` with a word on where a warm-up came from: a preset's, when the flags set none.
    pub fn explain(&self, e: Error, config: &RunConfig) -> Error {
        match (e, &self.config, self.warmup) {
            (Error::Config { field, msg }, Some(preset), None) if field == "warmup" => Error::config(
                field,
                format!("{msg} (the {} warm-up steps come from --config {preset}: pass --warmup N to change them)", config.schedule.warmup_steps),
            ),
            (e, _, _) => e,
        }
    }

    /// The run folder: `out`, or for a new run without one `runs/<family>` of `config`.
    pub fn out_dir(&self, config: Option<&RunConfig>) -> Result<PathBuf> {
        match (&self.out, config) {
            (Some(out), _) => Ok(out.clone()),
            (None, Some(c)) if !self.resume => Ok(PathBuf::from("runs").join(c.model.family())),
            _ => Err(Error::config("out", "--resume needs --out, the run directory to continue")),
        }
    }

    /// What a resume of the run may change.
    pub fn resume_options(&self) -> ResumeOptions {
        ResumeOptions {
            steps: self.steps,
            epochs: self.epochs,
            time_limit: self.time_limit,
            threads: self.threads,
            checkpoint_every: self.checkpoint_every,
            device: self.device,
            allow_data_change: self.allow_data_change,
        }
    }

    /// Errors when flags that exclude each other are both given (the command line's parser
    /// refuses them first; other front ends learn it here).
    fn check_exclusive(&self) -> Result<()> {
        let lengths = [("steps", self.steps.is_some()), ("epochs", self.epochs.is_some()), ("time-limit", self.time_limit.is_some())];
        let given: Vec<&str> = lengths.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
        if given.len() > 1 {
            return Err(Error::config(given[1], format!("--{} and --{} exclude each other: give one", given[0], given[1])));
        }
        if self.resume && self.force {
            return Err(Error::config("force", "--resume continues the run in --out and --force starts a new one there: give one"));
        }
        if self.allow_data_change && !self.resume {
            return Err(Error::config("allow-data-change", "only a resumed run (--resume) may continue on changed data"));
        }
        Ok(())
    }

    /// `base` with every setting the flags give (for a new run, `base` is the preset; for a
    /// resumed one, the run's own config).
    pub fn apply(&self, mut c: RunConfig) -> Result<RunConfig> {
        let mut sets = self.set.clone();
        if let Some(m) = self.model.as_deref().filter(|m| *m != c.model.family()) {
            c.model = ModelConfig::default_for(m)?;
            if c.model.is_grid() {
                c.data.kind = DatasetKind::Grid;
            } else if c.data.kind == DatasetKind::Grid {
                c.data.kind = DatasetKind::Lines;
            }
        }
        if let Some(d) = &self.data {
            c.data.path = Some(d.clone());
        }
        if let Some(k) = self.dataset {
            c.data.kind = k;
        }
        match self.tokenizer.as_deref() {
            None => {}
            Some("char") => c.data.tokenizer = TokenizerKind::Char,
            Some("bpe") => c.data.tokenizer = TokenizerKind::Bpe,
            Some(file) => c.data.tokenizer_file = Some(PathBuf::from(file)),
        }
        if let Some(s) = self.steps {
            (c.train.steps, c.train.epochs, c.train.time_limit) = (s, None, None);
        }
        if self.epochs.is_some() {
            (c.train.epochs, c.train.time_limit) = (self.epochs, None);
        }
        if self.time_limit.is_some() {
            c.train.time_limit = self.time_limit;
        }
        if let Some(v) = self.batch_size {
            c.train.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.optimizer.lr = v;
        }
        if let Some(v) = self.optimizer {
            c.optimizer.kind = v;
        }
        if let Some(v) = self.momentum {
            c.optimizer.momentum = v;
        }
        if let Some(v) = self.weight_decay {
            c.optimizer.weight_decay = v;
        }
        if let Some(v) = self.ema_decay {
            c.optimizer.ema_decay = v;
        }
        if let Some(s) = &self.schedule {
            if !["constant", "step", "onecycle", "cosine"].contains(&s.as_str()) {
                return Err(Error::config("schedule", format!("`{s}`: expected constant, step, onecycle or cosine")));
            }
            // The schedule's own parameters (a step schedule's step_size…) may come from --set.
            let current = serde_json::to_value(&c.schedule.schedule).map_err(|e| Error::config("schedule", e.to_string()))?;
            if current["schedule"] != s.as_str() {
                sets.insert(0, format!("schedule.schedule={s}"));
            }
        }
        if let Some(v) = self.warmup {
            c.schedule.warmup_steps = v;
        }
        if let Some(v) = self.clip_grad {
            if v < 0.0 {
                return Err(Error::config("clip-grad", format!("must be a positive number, or 0 to disable clipping, got {v}")));
            }
            c.train.clip_grad = (v > 0.0).then_some(v);
        }
        if let Some(v) = self.eval_every {
            c.train.eval_every = v;
        }
        if let Some(v) = self.checkpoint_every {
            c.train.checkpoint_every = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if self.threads.is_some() {
            c.train.threads = self.threads;
        }
        if let Some(p) = self.precision {
            c.train.precision = p;
        }
        if let Some(d) = self.device {
            c.train.device = d;
        }
        apply_overrides(&c, &sets)
    }

    /// With `--resume`, the other flags may repeat the run's settings but not change them
    /// (they would be ignored, or make the resumed run differ from an uninterrupted one).
    pub fn check_unchanged(&self, run: &RunDir) -> Result<()> {
        self.check_exclusive()?;
        run.require_run()?;
        let stored = run.load_config()?;
        let (base, kind_set) = match &self.config {
            Some(preset) => (load_preset(preset)?, preset_sets_data_kind(preset)?),
            None => (stored.clone(), true),
        };
        let mut wanted = self.config_from(base, kind_set)?;
        // `auto`, asked again, is the precision the run chose when it began.
        if wanted.train.precision == crate::tensor::Precision::Auto {
            wanted.train.precision = stored.train.precision;
        }
        // Paths are stored absolute; compare what the flags name.
        for path in [&mut wanted.data.path, &mut wanted.data.tokenizer_file].into_iter().flatten() {
            if let Ok(p) = std::fs::canonicalize(&*path) {
                *path = p;
            }
        }
        let as_json = |c: &RunConfig| serde_json::to_value(c).map_err(|e| Error::config("config", e.to_string()));
        let mut changed = Vec::new();
        diff_settings("", &as_json(&stored)?, &as_json(&wanted)?, &mut changed);
        changed.retain(|(key, _, _)| !RESUMABLE.contains(&key.as_str()));
        if changed.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = changed.iter().map(|(k, old, new)| format!("{k} {old} -> {new}")).collect();
        Err(Error::run_dir(
            run.root(),
            format!(
                "--resume keeps the settings of the run's config.json, but the flags change {} (only --steps, --epochs, --time-limit, --threads, --checkpoint-every and --device may change); start a new run with another --out or with --force",
                list.join(", ")
            ),
        ))
    }
}

/// `c` with the kind of the prepared corpus its data path names, if it names one; an error
/// naming the corpus when the run's family cannot train on that kind.
fn take_corpus_kind(mut c: RunConfig) -> Result<RunConfig> {
    let Some(dir) = c.data.path.as_deref().filter(|p| is_corpus(p)) else { return Ok(c) };
    let kind = read_corpus_meta(dir)?.kind;
    if (kind == DatasetKind::Grid) != c.model.is_grid() {
        let needs = if c.model.is_grid() { "grid" } else { "lines or stream" };
        return Err(Error::bad_file(
            dir,
            format!("is a corpus prepared as {} data, but family {} trains on {needs} data (prepare it again with --dataset)", kind.name(), c.model.family()),
        ));
    }
    c.data.kind = kind;
    Ok(c)
}

/// The leaves of `new` that differ from `old`, as (dotted key, old, new).
fn diff_settings(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            // Both sides' keys: a setting left out when at its default (train.precision,
            // model.dropout) is absent from one of them.
            let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                let null = serde_json::Value::Null;
                diff_settings(&key, o.get(k).unwrap_or(&null), n.get(k).unwrap_or(&null), out);
            }
        }
        _ if old != new => out.push((prefix.to_string(), old.to_string(), new.to_string())),
        _ => {}
    }
}

/// A `--set` item for a setting given as a JSON value (a front end whose settings come
/// typed, e.g. a Python dict): strings stay as they are, as on the command line; other
/// values are their JSON text.
pub fn setting(key: &str, value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => format!("{key}={s}"),
        other => format!("{key}={other}"),
    }
}
