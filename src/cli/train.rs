//! `convlm train`: a new run from a preset, a family and flags, or `--resume` of an existing
//! one.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::parse::{finite_f32, positive_f64, serde_name};
use super::progress::Progress;
use convlm::data::DatasetKind;
use convlm::models::ModelConfig;
use convlm::optim::OptimizerKind;
use convlm::run::config::{apply_overrides, load_preset, TokenizerKind};
use convlm::run::{resume, train, CancelToken, ResumeOptions, RunConfig, RunDir, TrainOptions, TrainSummary};

#[derive(Args, Default)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Training text: a file, or a folder of files read recursively [default: the built-in
    /// English word list]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory to write [default: runs/<family>]
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Model family: mlp, causal-cnn, dilated, hierarchical, wavenet, gated-cnn, pixelcnn
    /// [default: dilated, or the preset's]
    #[arg(long)]
    model: Option<String>,
    /// A TOML preset file, or a built-in preset name (names-mlp, names-dilated,
    /// names-hierarchical, shakespeare-cnn, reviews-bpe-cnn)
    #[arg(long)]
    config: Option<String>,
    /// How the text becomes examples: lines, stream or grid [default: lines]
    #[arg(long, value_parser = serde_name::<DatasetKind>)]
    dataset: Option<DatasetKind>,
    /// Tokenizer: char, bpe (trained on the data), or a tokenizer.json file (e.g. from
    /// `convlm tokenizer train`) [default: char]
    #[arg(long)]
    tokenizer: Option<String>,
    /// Optimizer steps [default: 2000]
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Passes over the training split (instead of --steps)
    #[arg(long, value_parser = positive_f64)]
    epochs: Option<f64>,
    /// Train for a wall-clock budget instead of a number of steps: seconds, or e.g. 15m,
    /// 1h30m. The schedule is laid over the steps the budget allows; the last evaluation and
    /// checkpoint happen before it ends
    #[arg(long, conflicts_with_all = ["steps", "epochs"], value_parser = |s: &str| convlm::run::budget::parse_duration(s).map_err(|e| e.to_string()))]
    time_limit: Option<f64>,
    /// Sequences per optimizer step [default: 32]
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate [default: 0.003]
    #[arg(long, value_parser = finite_f32)]
    lr: Option<f32>,
    /// sgd, adam or adamw [default: adamw]
    #[arg(long, value_parser = serde_name::<OptimizerKind>)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum [default: 0]
    #[arg(long, value_parser = finite_f32)]
    momentum: Option<f32>,
    /// Weight decay of conv and linear weights (decoupled for adamw, L2 for sgd and adam)
    /// [default: 0.01]
    #[arg(long, value_parser = finite_f32)]
    weight_decay: Option<f32>,
    /// constant, step, onecycle or cosine [default: constant]
    #[arg(long)]
    schedule: Option<String>,
    /// Linear warm-up steps [default: 0]
    #[arg(long)]
    warmup: Option<u64>,
    /// Clip the global gradient norm to this value; 0 disables clipping [default: 1]
    #[arg(long, value_parser = finite_f32)]
    clip_grad: Option<f32>,
    /// Validate, sample and keep the best model every N steps [default: 500]
    #[arg(long)]
    eval_every: Option<u64>,
    /// Save a resumable checkpoint every N steps, besides every evaluation [default: 0, only
    /// at evaluations]
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Seeds the initialisation, the split and the batch order [default: 1337]
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads, at most the number of cores [default: CONVLM_THREADS or every core]
    #[arg(long)]
    threads: Option<usize>,
    /// Where the steps run: cpu, gpu (the first discrete adapter, else integrated, else a
    /// software one) or gpu:N (`convlm devices` lists them) [default: cpu, or the device the
    /// resumed run used]
    #[arg(long, value_parser = super::device::device_arg)]
    device: Option<convlm::tensor::Device>,
    /// Continue the run in --out from its last checkpoint, exactly (same data order). Only
    /// --steps, --epochs, --time-limit (a new budget in all), --threads and --device may
    /// change.
    #[arg(long)]
    resume: bool,
    /// Start a new run although --out already holds one (or other files): the folder is
    /// renamed to <out>.old-N first, never deleted
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// With --resume: continue although the data files changed since the run started
    #[arg(long, requires = "resume")]
    allow_data_change: bool,
    /// Any other setting as KEY=VALUE, e.g. --set model.channels=256 --set data.dedupe=true
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print only the final summary
    #[arg(long, short)]
    quiet: bool,
}

/// The run configuration from preset, family and flags (flags win).
fn train_config(a: &TrainArgs) -> Result<RunConfig> {
    let base = match &a.config {
        Some(p) => load_preset(p)?,
        None => RunConfig::default(),
    };
    apply_flags(base, a)
}

/// `base` with every setting the flags give (for a new run, `base` is the preset; for a
/// resumed one, the run's own config).
fn apply_flags(mut c: RunConfig, a: &TrainArgs) -> Result<RunConfig> {
    let mut sets = a.set.clone();
    if let Some(m) = a.model.as_deref().filter(|m| *m != c.model.family()) {
        c.model = ModelConfig::default_for(m)?;
        if c.model.is_grid() {
            c.data.kind = DatasetKind::Grid;
        } else if c.data.kind == DatasetKind::Grid {
            c.data.kind = DatasetKind::Lines;
        }
    }
    if let Some(d) = &a.data {
        c.data.path = Some(d.clone());
    }
    if let Some(k) = a.dataset {
        c.data.kind = k;
    }
    match a.tokenizer.as_deref() {
        None => {}
        Some("char") => c.data.tokenizer = TokenizerKind::Char,
        Some("bpe") => c.data.tokenizer = TokenizerKind::Bpe,
        Some(file) => c.data.tokenizer_file = Some(PathBuf::from(file)),
    }
    if let Some(s) = a.steps {
        (c.train.steps, c.train.epochs, c.train.time_limit) = (s, None, None);
    }
    if a.epochs.is_some() {
        (c.train.epochs, c.train.time_limit) = (a.epochs, None);
    }
    if a.time_limit.is_some() {
        c.train.time_limit = a.time_limit;
    }
    if let Some(v) = a.batch_size {
        c.train.batch_size = v;
    }
    if let Some(v) = a.lr {
        c.optimizer.lr = v;
    }
    if let Some(v) = a.optimizer {
        c.optimizer.kind = v;
    }
    if let Some(v) = a.momentum {
        c.optimizer.momentum = v;
    }
    if let Some(v) = a.weight_decay {
        c.optimizer.weight_decay = v;
    }
    if let Some(s) = &a.schedule {
        if !["constant", "step", "onecycle", "cosine"].contains(&s.as_str()) {
            bail!("invalid --schedule `{s}`: expected constant, step, onecycle or cosine");
        }
        // The schedule's own parameters (a step schedule's step_size…) may come from --set.
        let current = serde_json::to_value(&c.schedule.schedule)?;
        if current["schedule"] != s.as_str() {
            sets.insert(0, format!("schedule.schedule={s}"));
        }
    }
    if let Some(v) = a.warmup {
        c.schedule.warmup_steps = v;
    }
    if let Some(v) = a.clip_grad {
        if v < 0.0 {
            bail!("invalid clip-grad: must be a positive number, or 0 to disable clipping, got {v}");
        }
        c.train.clip_grad = (v > 0.0).then_some(v);
    }
    if let Some(v) = a.eval_every {
        c.train.eval_every = v;
    }
    if let Some(v) = a.checkpoint_every {
        c.train.checkpoint_every = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    if a.threads.is_some() {
        c.train.threads = a.threads;
    }
    if let Some(d) = a.device {
        c.train.device = d;
    }
    Ok(apply_overrides(&c, &sets)?)
}

pub fn cmd_train(a: TrainArgs) -> Result<()> {
    // One of several ranks under mpirun (MPI is initialised here, on the main thread), or alone.
    let group = convlm::dist::join()?;
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    ctrlc::set_handler(move || on_signal.cancel()).context("installing the Ctrl-C handler")?;
    if !group.is_distributed() {
        let (out, result) = train_or_resume(&a, &group, cancel)?;
        if let Some(code) = finish(&out, result)? {
            std::process::exit(code);
        }
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        let outcome = super::ranks::cancel_on_sigterm(&cancel).and_then(|_| train_or_resume(&a, &group, cancel)).and_then(|(out, result)| {
            if group.is_root() {
                return finish(&out, result);
            }
            match result {
                Ok(_) => Ok(None),
                Err(convlm::Error::Interrupted { .. }) => Ok(Some(130)),
                Err(e) => Err(e.into()),
            }
        });
        super::ranks::end(group, outcome)
    }
    #[cfg(not(target_os = "linux"))]
    bail!("training on several processes is supported on Linux only")
}

/// Trains or resumes as the flags say, on the ranks of `group`: the run folder and the
/// library's result.
fn train_or_resume(a: &TrainArgs, group: &convlm::dist::Group, cancel: CancelToken) -> Result<(PathBuf, convlm::Result<TrainSummary>)> {
    let opts = TrainOptions { samples: !a.quiet, cancel, force: a.force, group: group.clone() };
    let mut progress = Progress::new(!a.quiet && group.is_root());
    if a.resume {
        let Some(out) = a.out.clone() else { bail!("--resume needs --out, the run directory to continue") };
        // Rank 0 checks the flags against the run's config; the others stop with it.
        let checked = if group.is_root() { check_unchanged(&RunDir::new(&out), a) } else { Ok(()) };
        let failed = group.any(checked.is_err(), "checking the flags")?;
        checked?;
        if failed {
            return Err(convlm::Error::PeerFailed.into());
        }
        let options = ResumeOptions {
            steps: a.steps,
            epochs: a.epochs,
            time_limit: a.time_limit,
            threads: a.threads,
            device: a.device,
            allow_data_change: a.allow_data_change,
        };
        let result = resume(&RunDir::new(&out), &options, &opts, &mut |event| progress.show(event));
        Ok((out, result))
    } else {
        let config = train_config(a)?;
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(config.model.family()));
        let result = train(&config, &RunDir::new(&out), &opts, &mut |event| progress.show(event));
        Ok((out, result))
    }
}

/// Settings that a resumed run may change.
const RESUMABLE: [&str; 5] = ["train.steps", "train.epochs", "train.time_limit", "train.threads", "train.device"];

/// With `--resume`, the other flags may repeat the run's settings but not change them
/// (they would be ignored, or make the resumed run differ from an uninterrupted one).
fn check_unchanged(run: &RunDir, a: &TrainArgs) -> Result<()> {
    run.require_run()?;
    let stored = run.load_config()?;
    let mut base = stored.clone();
    if let Some(preset) = &a.config {
        base = load_preset(preset)?;
    }
    let mut wanted = apply_flags(base, a)?;
    // Paths are stored absolute; compare what the flags name.
    for path in [&mut wanted.data.path, &mut wanted.data.tokenizer_file].into_iter().flatten() {
        if let Ok(p) = std::fs::canonicalize(&*path) {
            *path = p;
        }
    }
    let mut changed = Vec::new();
    diff_settings("", &serde_json::to_value(&stored)?, &serde_json::to_value(&wanted)?, &mut changed);
    changed.retain(|(key, _, _)| !RESUMABLE.contains(&key.as_str()));
    if changed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = changed.iter().map(|(k, old, new)| format!("{k} {old} -> {new}")).collect();
    bail!(
        "--resume keeps the settings of the run's config.json, but the flags change {} (only --steps, --epochs, --time-limit, --threads and --device may change); start a new run with another --out or with --force",
        list.join(", ")
    )
}

/// The leaves of `new` that differ from `old`, as (dotted key, old, new).
fn diff_settings(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            for (k, nv) in n {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                diff_settings(&key, o.get(k).unwrap_or(&serde_json::Value::Null), nv, out);
            }
        }
        _ if old != new => out.push((prefix.to_string(), old.to_string(), new.to_string())),
        _ => {}
    }
}

/// Prints the outcome of a run, or the error with what survived; `Some(status)` when the
/// process should exit with that status after saying why (Ctrl-C: 130).
fn finish(out: &std::path::Path, result: convlm::Result<TrainSummary>) -> Result<Option<i32>> {
    let run = RunDir::new(out);
    match result {
        Ok(s) => {
            if let Some(old) = &s.moved_aside {
                eprintln!("moved what was in {} to {}", out.display(), old.display());
            }
            match s.final_train_loss {
                None => println!(
                    "nothing to do: the run in {} is already at step {} of {} (pass --steps N with N > {} to train further)",
                    out.display(),
                    s.steps,
                    s.steps,
                    s.steps
                ),
                Some(loss) => {
                    let best = s.best_val_loss.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into());
                    println!("trained {} steps: train loss {loss:.4}, best val loss {best}; run saved in {}", s.steps, out.display());
                    println!("next: convlm sample --run {0}   |   convlm eval --run {0} --split test   |   convlm plot --run {0}", out.display());
                }
            }
            Ok(None)
        }
        Err(convlm::Error::Interrupted { step }) => {
            eprintln!("interrupted at step {step}: checkpoint saved in {}; continue with --resume --out {}", out.display(), out.display());
            Ok(Some(130))
        }
        Err(e @ convlm::Error::NonFinite { .. }) => {
            // Say which checkpoint survives (state.json is written last in a checkpoint).
            let saved = convlm::io::read_json::<convlm::run::checkpoint::TrainState>(&run.file(convlm::run::checkpoint::STATE_FILE))
                .map(|s| format!("the last good checkpoint (step {}) is in {}", s.step, out.display()))
                .unwrap_or_else(|_| format!("no checkpoint was saved in {}", out.display()));
            bail!("{e}; {saved}")
        }
        Err(e) => Err(e.into()),
    }
}
