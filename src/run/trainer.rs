//! The training loop: a batch and one [`train_step`](crate::run::step::train_step) per step,
//! the schedule, the metrics log; periodic validation with samples and best-model tracking;
//! checkpoints for exact resume; Ctrl-C and divergence handling.
//!
//! [`Trainer`] takes the run one step at a time (for a caller that steps it itself: a
//! notebook, a script that stops early); [`train`] and [`resume`] step it to the end.
//!
//! With several ranks ([`TrainOptions::group`]) every rank runs this loop in lockstep on its
//! share of each global batch; rank 0 alone writes files and reports events, every decision
//! (stop on Ctrl-C, divergence, best model) is taken from values all ranks share.

use std::time::Instant;

use serde_json::json;

use crate::data::Split;
use crate::dist::Group;
use crate::error::{Error, Result};
use crate::run::budget::{TimeBudget, FIRST_REVISION, REVISE_EVERY};
use crate::run::checkpoint::{RunDir, METRICS_FILE};
use crate::run::config::RunConfig;
use crate::run::eval::EvalReport;
use crate::run::events::{CancelToken, OnEvent, TrainEvent};
use crate::run::metrics::MetricsLog;
use crate::run::milestones::{budget_verdict, diverged, evaluate_and_sample, save, with_averages};
use crate::run::ranks::{on_root, share_buffers, Ranks};
use crate::run::session::{new_session, next_step, resume_session, ResumeOptions, Session};
use crate::run::step::StepOutcome;
use crate::tensor::threads::on_pool;

/// How to run the loop.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Draw samples after every evaluation and report them ([`TrainEvent::Samples`]).
    pub samples: bool,
    /// Cancelled: save a checkpoint at the next step and stop with `Error::Interrupted`.
    pub cancel: CancelToken,
    /// A new run whose folder already holds a run (or other files) moves them aside to
    /// `<dir>.old-N` instead of refusing.
    pub force: bool,
    /// The processes that train this model together (default: this one alone). Every rank
    /// calls [`train`] or [`resume`] (or steps a [`Trainer`]) with its own group; only rank 0 writes in the run folder
    /// and reports events, and every rank returns the same outcome.
    pub group: Group,
}

/// The outcome of a finished run.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Steps completed in all.
    pub steps: u64,
    /// Steps this call took (0 when a resumed run was already complete).
    pub steps_taken: u64,
    /// The training loss of the last step taken.
    pub final_train_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub params: usize,
    /// Where an earlier run (or other files) in the folder was moved by `force`.
    pub moved_aside: Option<std::path::PathBuf>,
    /// Examples in the validation and test splits (0: `eval` of that split has nothing to
    /// score).
    pub val_examples: usize,
    pub test_examples: usize,
}

/// Trains `config` into a new run in `run` (claiming the folder: see
/// [`RunDir::claim`]). Progress is reported to `on_event`.
pub fn train(config: &RunConfig, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let trainer = Trainer::new(config, run, opts, &mut *on_event)?;
    run_to_end(trainer, on_event)
}

/// Continues the run in `run` from its last checkpoint, exactly (same batches, same
/// numbers as an uninterrupted run), after checking that its config, tokenizer and data are
/// the ones it was started with.
pub fn resume(run: &RunDir, resume: &ResumeOptions, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let trainer = Trainer::resume(run, resume, opts, &mut *on_event)?;
    run_to_end(trainer, on_event)
}

/// Steps `trainer` to the end of its run, the whole loop on one pool worker (see
/// [`on_pool`]); [`TrainEvent::Finished`] follows whatever the outcome.
fn run_to_end(mut trainer: Trainer, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let result = on_pool(|| {
        while trainer.step(&mut *on_event)?.is_some() {}
        trainer.finish(&mut *on_event)
    });
    trainer.events(on_event)(TrainEvent::Finished);
    result
}

/// Rank 0 reports; the others' events go nowhere.
fn quiet_unless_root<'a>(group: &Group, on_event: OnEvent<'a>) -> OnEvent<'a> {
    if group.is_root() {
        on_event
    } else {
        Box::leak(Box::new(|_: TrainEvent<'_>| {}))
    }
}

/// What one step of a [`Trainer`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Steps completed in all, this one included.
    pub step: u64,
    /// The training loss of the step (before its update).
    pub loss: f64,
    /// The step's line in metrics.jsonl: `step`, `loss`, `lr`, `grad_norm`, `step_ms`,
    /// `tokens_per_s` (and `allreduce_ms` in a data-parallel run).
    pub record: serde_json::Value,
    /// The validation loss, when the step ended with the periodic evaluation.
    pub val_loss: Option<f64>,
}

/// A training run taken one step at a time. [`Trainer::new`] starts a run (claiming its
/// folder) and [`Trainer::resume`] continues one from its last checkpoint; each
/// [`Trainer::step`] takes a step with everything `convlm train` does around it (the
/// metrics record, the periodic evaluation, samples and checkpoint, the time budget, Ctrl-C
/// through [`TrainOptions::cancel`], divergence); [`Trainer::finish`] draws the loss plot and
/// sums the run up. The run folder stays locked while the trainer lives.
pub struct Trainer {
    s: Session,
    /// The session's config, read while the session is borrowed for the step.
    cfg: RunConfig,
    run: RunDir,
    opts: TrainOptions,
    /// metrics.jsonl (rank 0 only).
    log: Option<MetricsLog>,
    ranks: Ranks,
    /// When the trainer was opened, and the run's step and training seconds then.
    started: Instant,
    start_step: u64,
    seconds_before: f64,
    budget: Option<TimeBudget>,
    /// Batches one evaluation reads (for the time budget's reserve before the first one).
    eval_batches: usize,
    last_loss: Option<f64>,
}

impl Trainer {
    /// Opens a new run of `config` in `run` (claiming the folder: see [`RunDir::claim`]).
    pub fn new(config: &RunConfig, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<Trainer> {
        let on_event = quiet_unless_root(&opts.group, on_event);
        let s = new_session(config, run, opts.force, &opts.group, &opts.cancel, &mut *on_event)?;
        Trainer::open(s, run, opts, on_event)
    }

    /// Opens the run in `run` at its last checkpoint, after checking that its config,
    /// tokenizer and data are the ones it was started with: stepping it continues exactly
    /// (same batches, same numbers as an uninterrupted run).
    pub fn resume(run: &RunDir, resume: &ResumeOptions, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<Trainer> {
        let on_event = quiet_unless_root(&opts.group, on_event);
        let s = resume_session(run, resume, &opts.group, &opts.cancel, &mut *on_event)?;
        Trainer::open(s, run, opts, on_event)
    }

    /// Opens the metrics log and the time budget of an opened session (whose pool is sized),
    /// and reports [`TrainEvent::Started`].
    fn open(mut s: Session, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<Trainer> {
        opts.group.set_interrupt(opts.cancel.flag());
        let group = &opts.group;
        on_pool(|| {
            let log = on_root(group, "opening metrics.jsonl", || MetricsLog::open(&run.file(METRICS_FILE), s.state.step))?;
            let mut ranks = Ranks::new(group, &s.model);
            ranks.use_device(s.config.train.device, s.config.train.precision, &s.model, &s.optimizer)?;
            if let Some((description, software)) = ranks.device_info() {
                on_event(TrainEvent::Device { description, software });
            }
            on_event(TrainEvent::Started {
                family: s.config.model.family(),
                params: s.model.params().numel(),
                receptive_field: s.model.receptive_field(),
                vocab_size: s.tokenizer.vocab_size(),
                train_examples: s.dataset.num_examples(Split::Train),
                threads: rayon::current_num_threads(),
                run_dir: run.root(),
                step: s.state.step,
                total_steps: s.state.total_steps,
                time_limit_s: s.state.time_limit_s,
            });
            let (start_step, seconds_before) = (s.state.step, s.state.train_seconds);
            let budget = s.state.time_limit_s.map(|limit| TimeBudget::new(limit, seconds_before, start_step));
            let cfg = &s.config;
            let val_batches = s.dataset.num_examples(Split::Val).div_ceil(cfg.train.batch_size.max(1));
            let eval_batches = if cfg.train.eval_batches == 0 { val_batches } else { cfg.train.eval_batches.min(val_batches) };
            if budget.is_some() && budget_verdict(group, budget.as_ref(), s.state.step, eval_batches, false)?.0 {
                s.state.total_steps = s.state.step;
            }
            Ok(Trainer {
                cfg: s.config.clone(),
                s,
                run: run.clone(),
                opts: opts.clone(),
                log,
                ranks,
                started: Instant::now(),
                start_step,
                seconds_before,
                budget,
                eval_batches,
                last_loss: None,
            })
        })
    }

    /// `on_event` on rank 0; nothing on the others.
    fn events<'a>(&self, on_event: OnEvent<'a>) -> OnEvent<'a> {
        quiet_unless_root(&self.opts.group, on_event)
    }

    /// Takes the next step, then (at its multiples of `eval_every`, and at the last step) the
    /// evaluation with samples and a checkpoint, and the checkpoints of `checkpoint_every`.
    /// `None` when the run has taken all its steps (or its time budget is spent).
    ///
    /// Cancelled ([`TrainOptions::cancel`]), it saves a checkpoint instead of stepping and
    /// errors with [`Error::Interrupted`] (the token is cleared, so the trainer may go on);
    /// a step that makes the model non-finite saves the last good checkpoint and errors
    /// with [`Error::NonFinite`].
    pub fn step(&mut self, on_event: OnEvent<'_>) -> Result<Option<StepReport>> {
        let on_event = self.events(on_event);
        on_pool(|| self.step_on_pool(on_event))
    }

    fn step_on_pool(&mut self, on_event: OnEvent<'_>) -> Result<Option<StepReport>> {
        let (s, group, cfg) = (&mut self.s, &self.opts.group, &self.cfg);
        if s.state.step >= s.state.total_steps {
            return Ok(None);
        }
        // The batch RNG's position before this step's batch: what a checkpoint of the
        // `step` completed steps must record for an exact resume.
        let rng_pos = s.rng.get_word_pos();
        // Every rank stops at the same step when any was interrupted.
        let cancel = &self.opts.cancel;
        let cancelled = if group.is_distributed() { group.any(cancel.is_cancelled(), "the check for Ctrl-C")? } else { cancel.is_cancelled() };
        if cancelled {
            group.clear_interrupt();
            s.state.rng_word_pos = rng_pos.to_string();
            s.state.train_seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
            self.ranks.sync(&mut s.model, Some(&mut s.optimizer))?;
            save(group, &self.run, s, &mut self.log, "saving the checkpoint")?;
            // Handled: the caller may step on (a later cancel stops the run again).
            cancel.reset();
            group.set_interrupt(cancel.flag());
            return Err(Error::Interrupted { step: s.state.step });
        }
        let step = s.state.step;
        let step_started = Instant::now();
        let (batch, settings) = next_step(cfg, &s.dataset, &s.state, step, &mut s.rng)?;
        let lr = settings.lr;
        let stats = match self.ranks.step(&mut s.model, &mut s.optimizer, &batch, settings)? {
            StepOutcome::Done(stats) => stats,
            StepOutcome::Diverged { what } => return Err(diverged(&self.run, s, &mut self.log, step, rng_pos, what, &self.ranks)),
        };
        let step_s = step_started.elapsed().as_secs_f64().max(1e-9);
        s.state.step += 1;
        self.last_loss = Some(stats.loss);
        let tokens_per_s = stats.tokens as f64 / step_s;
        let mut record = json!({
            "step": s.state.step, "loss": stats.loss, "lr": lr, "grad_norm": stats.grad_norm,
            "step_ms": (step_s * 1e6).round() / 1e3, "tokens_per_s": tokens_per_s.round(),
        });
        if group.is_distributed() {
            record["allreduce_ms"] = json!((stats.allreduce_ms * 1e3).round() / 1e3);
        }
        if let Some(log) = &mut self.log {
            log.write(&record)?;
        }
        let steps_per_s = (s.state.step - self.start_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let train_seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        on_event(TrainEvent::Step { step: s.state.step, total_steps: s.state.total_steps, loss: stats.loss, tokens_per_s, steps_per_s, train_seconds });
        if self.budget.is_some() {
            let revise = s.state.step == FIRST_REVISION || (s.state.step > FIRST_REVISION && s.state.step.is_multiple_of(REVISE_EVERY));
            match budget_verdict(group, self.budget.as_ref(), s.state.step, self.eval_batches, revise)? {
                // This step is the last: its evaluation and checkpoint follow.
                (true, _) => s.state.total_steps = s.state.step,
                (false, Some(total)) => s.state.schedule_plan.push([s.state.step, total]),
                (false, None) => {}
            }
        }

        let at_eval = s.state.step.is_multiple_of(cfg.train.eval_every) || s.state.step == s.state.total_steps;
        let eval_started = Instant::now();
        let val_loss = if at_eval {
            // Of the moving average of the weights where the optimizer keeps one.
            let (run, log, samples) = (&self.run, &mut self.log, self.opts.samples);
            Some(with_averages(s, &mut self.ranks, |s, ranks| evaluate_and_sample(s, run, log, samples, ranks, &mut *on_event))?)
        } else {
            None
        };
        let at_checkpoint = cfg.train.checkpoint_every > 0 && s.state.step.is_multiple_of(cfg.train.checkpoint_every);
        if at_eval || at_checkpoint {
            s.state.rng_word_pos = s.rng.get_word_pos().to_string();
            s.state.train_seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
            self.ranks.sync(&mut s.model, Some(&mut s.optimizer))?;
            // Records up to this step reach the disk before the checkpoint that covers them.
            save(group, &self.run, s, &mut self.log, "saving a checkpoint")?;
        }
        if let (Some(b), true) = (&mut self.budget, at_eval) {
            b.record_final_cost(eval_started.elapsed().as_secs_f64());
        }
        Ok(Some(StepReport { step: s.state.step, loss: stats.loss, record, val_loss }))
    }

    /// The loss, perplexity and bits per token of the model as it is now on all of `split`
    /// (as `convlm eval` scores a run; the moving average of the weights when the optimizer
    /// keeps one); training is not affected.
    pub fn evaluate(&mut self, split: Split) -> Result<EvalReport> {
        let group = &self.opts.group;
        with_averages(&mut self.s, &mut self.ranks, |s, ranks| {
            share_buffers(group, &mut s.model)?;
            // On the CPU this evaluates on the pool (`evaluate_in`), on a GPU on the device.
            ranks.evaluate(&mut s.model, &s.dataset, split, s.config.train.batch_size, 0)
        })
    }

    /// Saves a resumable checkpoint of the run as it is now (model.safetensors, state.json
    /// and the metrics so far included): a resume continues from this step exactly.
    pub fn save(&mut self) -> Result<()> {
        let s = &mut self.s;
        s.state.rng_word_pos = s.rng.get_word_pos().to_string();
        s.state.train_seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
        self.ranks.sync(&mut s.model, Some(&mut s.optimizer))?;
        on_pool(|| save(&self.opts.group, &self.run, s, &mut self.log, "saving a checkpoint"))
    }

    /// Writes the metrics so far, draws loss.svg (a warning if it cannot be drawn: the plot
    /// is a convenience) and sums the run up. Called by [`train`] once the last step is
    /// taken; the trainer may go on after it.
    pub fn finish(&mut self, on_event: OnEvent<'_>) -> Result<TrainSummary> {
        let on_event = self.events(on_event);
        if let Some(log) = &mut self.log {
            log.flush()?;
            // The plot is a convenience: a failure to draw it must not fail a finished run.
            match crate::run::plots::plot_run(&self.run) {
                Ok(plot) => plot.skipped.into_iter().for_each(|note| on_event(TrainEvent::Warning(note))),
                Err(e) => on_event(TrainEvent::Warning(format!("could not draw the loss plot: {e}"))),
            }
        }
        Ok(self.summary())
    }

    /// The run so far.
    pub fn summary(&self) -> TrainSummary {
        let s = &self.s;
        TrainSummary {
            steps: s.state.step,
            steps_taken: s.state.step - self.start_step,
            final_train_loss: self.last_loss,
            best_val_loss: s.state.best_val_loss,
            params: s.model.params().numel(),
            moved_aside: s.moved_aside.clone(),
            val_examples: s.dataset.num_examples(Split::Val),
            test_examples: s.dataset.num_examples(Split::Test),
        }
    }

    /// Steps completed in all.
    pub fn steps_done(&self) -> u64 {
        self.s.state.step
    }

    /// The steps the run takes in all (for a time-limited run, an upper bound until its
    /// clock ends it).
    pub fn total_steps(&self) -> u64 {
        self.s.state.total_steps
    }

    /// Whether the run has taken all its steps.
    pub fn is_done(&self) -> bool {
        self.s.state.step >= self.s.state.total_steps
    }

    /// The run's configuration (as in its config.json).
    pub fn config(&self) -> &RunConfig {
        &self.s.config
    }

    /// The run folder.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }
}
