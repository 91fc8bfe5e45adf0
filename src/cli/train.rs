//! `convlm train`: a new run from a preset, a family and flags, or `--resume` of an existing
//! one.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::output::{err, out as say};
use super::parse::{finite_f32, positive_f64, serde_name};
use super::progress::Progress;
use convlm::data::DatasetKind;
use convlm::optim::OptimizerKind;
use convlm::run::{resume, train, CancelToken, RunDir, TrainFlags, TrainOptions, TrainSummary};
use convlm::tensor::Precision;

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
    /// Model family (see model_help: the list comes from the registry)
    #[arg(long, help = model_help())]
    model: Option<String>,
    /// A TOML preset file, or a built-in preset (see config_help: the list comes from PRESETS)
    #[arg(long, help = config_help())]
    config: Option<String>,
    /// How the text becomes examples: lines, stream or grid [default: the preset's, else a
    /// prepared corpus's own kind, else lines (grid for pixelcnn)]
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
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999) and
    /// evaluate, sample and export it (best.safetensors, model.safetensors) [default: 0, none]
    #[arg(long, value_parser = finite_f32)]
    ema_decay: Option<f32>,
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
    /// fp32, bf16 or auto. bf16: matmuls and convolutions take bf16 inputs and accumulate in
    /// fp32 (torch.autocast's bf16; needs a CPU with AVX512_BF16); parameters, optimizer and
    /// checkpoints stay fp32. auto: bf16 where the CPU has it, else fp32. The precision run
    /// in is kept in the run's config, so --resume continues with it [default: fp32, or the
    /// preset's]
    #[arg(long, value_parser = serde_name::<Precision>)]
    precision: Option<Precision>,
    /// Where the steps run: cpu, gpu (the first discrete adapter, else integrated, else a
    /// software one) or gpu:N (`convlm devices` lists them) [default: cpu, or the device the
    /// resumed run used]
    #[arg(long, value_parser = super::device::device_arg)]
    device: Option<convlm::tensor::Device>,
    /// Continue the run in --out from its last checkpoint, exactly (same data order); a run
    /// stopped before its first checkpoint starts again from step 0. Only --steps, --epochs,
    /// --time-limit (a new budget in all), --threads, --checkpoint-every and --device may
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

/// `--model`'s help: every family of the registry.
fn model_help() -> String {
    format!("Model family: {} [default: dilated, or the preset's]", convlm::models::FAMILIES.join(", "))
}

/// `--config`'s help: every built-in preset.
fn config_help() -> String {
    let presets: Vec<&str> = convlm::run::config::PRESETS.iter().map(|(name, _)| *name).collect();
    format!("A TOML preset file, or a built-in preset: {}", presets.join(", "))
}

impl TrainArgs {
    /// The flags as the library reads them ([`TrainFlags`]: the same for every front end).
    fn flags(&self) -> TrainFlags {
        TrainFlags {
            data: self.data.clone(),
            out: self.out.clone(),
            model: self.model.clone(),
            config: self.config.clone(),
            dataset: self.dataset,
            tokenizer: self.tokenizer.clone(),
            steps: self.steps,
            epochs: self.epochs,
            time_limit: self.time_limit,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            ema_decay: self.ema_decay,
            schedule: self.schedule.clone(),
            warmup: self.warmup,
            clip_grad: self.clip_grad,
            eval_every: self.eval_every,
            checkpoint_every: self.checkpoint_every,
            seed: self.seed,
            threads: self.threads,
            precision: self.precision,
            device: self.device,
            resume: self.resume,
            force: self.force,
            allow_data_change: self.allow_data_change,
            set: self.set.clone(),
        }
    }
}

pub fn cmd_train(a: TrainArgs) -> Result<()> {
    // One of several ranks under mpirun (MPI is initialised here, on the main thread), or alone.
    super::signals::ignore_sigpipe();
    let group = convlm::dist::join()?;
    // Ctrl-C saves a checkpoint first: a second one does not cut that short.
    let cancel = super::signals::on_ctrl_c(false)?;
    if !group.is_distributed() {
        let (out, result) = train_or_resume(&a, &group, cancel)?;
        if let Some(code) = finish(&out, result)? {
            std::process::exit(code);
        }
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        let outcome = super::ranks::cancel_on_sigterm(&cancel, &group).and_then(|_| train_or_resume(&a, &group, cancel)).and_then(|(out, result)| {
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
    let flags = a.flags();
    if a.resume {
        let out = flags.out_dir(None)?;
        // Rank 0 checks the flags against the run's config; the others stop with it.
        let checked = if group.is_root() { flags.check_unchanged(&RunDir::new(&out)) } else { Ok(()) };
        let failed = group.any(checked.is_err(), "checking the flags")?;
        checked?;
        if failed {
            return Err(convlm::Error::PeerFailed.into());
        }
        let result = resume(&RunDir::new(&out), &flags.resume_options(), &opts, &mut |event| progress.show(event));
        Ok((out, result))
    } else {
        let config = flags.new_config()?;
        let out = flags.out_dir(Some(&config))?;
        let result = train(&config, &RunDir::new(&out), &opts, &mut |event| progress.show(event));
        // A warm-up the flags did not set came from the preset: say so.
        let result = result.map_err(|e| flags.explain(e, &config));
        Ok((out, result))
    }
}

/// Prints the outcome of a run, or the error with what survived; `Some(status)` when the
/// process should exit with that status after saying why (Ctrl-C: 130).
fn finish(out: &std::path::Path, result: convlm::Result<TrainSummary>) -> Result<Option<i32>> {
    let run = RunDir::new(out);
    match result {
        Ok(s) => {
            if let Some(old) = &s.moved_aside {
                err(format!("moved what was in {} to {}", out.display(), old.display()));
            }
            match s.final_train_loss {
                None => say(format!(
                    "nothing to do: the run in {} is already at step {} of {} (pass --steps N with N > {} to train further)",
                    out.display(),
                    s.steps,
                    s.steps,
                    s.steps
                )),
                Some(loss) => {
                    let best = s.best_val_loss.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into());
                    say(format!("trained {} steps: train loss {loss:.4}, best val loss {best}; run saved in {}", s.steps, out.display()));
                    // Suggest only what works: a split without examples cannot be scored.
                    let run = out.display();
                    let mut next = vec![format!("convlm sample --run {run}")];
                    if s.test_examples > 0 {
                        next.push(format!("convlm eval --run {run} --split test"));
                    } else if s.val_examples > 0 {
                        next.push(format!("convlm eval --run {run} --split val"));
                    }
                    next.push(format!("convlm plot --run {run}"));
                    say(format!("next: {}", next.join("   |   ")));
                }
            }
            Ok(None)
        }
        Err(convlm::Error::Interrupted { step }) => {
            err(format!("interrupted at step {step}: checkpoint saved in {}; continue with --resume --out {}", out.display(), out.display()));
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
