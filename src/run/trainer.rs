//! The training loop: a batch and one [`train_step`](crate::run::step::train_step) per step,
//! the schedule, the metrics log; periodic validation with samples and best-model tracking;
//! checkpoints for exact resume; Ctrl-C and divergence handling.
//!
//! With several ranks ([`TrainOptions::group`]) every rank runs this loop in lockstep on its
//! share of each global batch; rank 0 alone writes files and reports events, every decision
//! (stop on Ctrl-C, divergence, best model) is taken from values all ranks share.

use std::time::Instant;

use serde_json::json;

use crate::data::Split;
use crate::dist::Group;
use crate::error::{Error, Result};
use crate::generate::SamplingConfig;
use crate::run::budget::{TimeBudget, FIRST_REVISION, REVISE_EVERY};
use crate::run::checkpoint::{RunDir, BEST_FILE, METRICS_FILE};
use crate::run::config::RunConfig;
use crate::run::events::{CancelToken, OnEvent, TrainEvent};
use crate::run::metrics::MetricsLog;
use crate::run::ranks::{check_same_weights, on_root, share_buffers, threads_per_rank, Ranks};
use crate::run::samples::{sample_texts, SampleRequest};
use crate::run::session::{new_session, next_step, resume_session, save_last_good, ResumeOptions, Session};
use crate::run::step::StepOutcome;
use crate::tensor::threads::{init_threads, on_pool, oversubscription_warning};

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
    /// calls [`train`] or [`resume`] with its own group; only rank 0 writes in the run folder
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
}

/// Trains `config` into a new run in `run` (claiming the folder: see
/// [`RunDir::claim`]). Progress is reported to `on_event`.
pub fn train(config: &RunConfig, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let on_event = quiet_unless_root(&opts.group, on_event);
    let s = new_session(config, run, opts.force, &opts.group, &mut *on_event)?;
    run_session(s, run, opts, on_event)
}

/// Rank 0 reports; the others' events go nowhere.
fn quiet_unless_root<'a>(group: &Group, on_event: OnEvent<'a>) -> OnEvent<'a> {
    if group.is_root() {
        on_event
    } else {
        Box::leak(Box::new(|_: TrainEvent<'_>| {}))
    }
}

/// Continues the run in `run` from its last checkpoint, exactly (same batches, same
/// numbers as an uninterrupted run), after checking that its config, tokenizer and data are
/// the ones it was started with.
pub fn resume(run: &RunDir, resume: &ResumeOptions, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let on_event = quiet_unless_root(&opts.group, on_event);
    let s = resume_session(run, resume, &opts.group, &mut *on_event)?;
    run_session(s, run, opts, on_event)
}

fn run_session(s: Session, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let threads = threads_per_rank(&opts.group, s.config.train.threads);
    if let Some(warning) = oversubscription_warning(threads) {
        on_event(TrainEvent::Warning(warning));
    }
    init_threads(threads);
    opts.group.set_interrupt(opts.cancel.flag());
    let result = on_pool(|| train_session(s, run, opts, &mut *on_event));
    on_event(TrainEvent::Finished);
    result
}

/// The training loop of an opened session (runs on a pool worker, see [`on_pool`]).
fn train_session(mut s: Session, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let group = &opts.group;
    let mut log = on_root(group, "opening metrics.jsonl", || MetricsLog::open(&run.file(METRICS_FILE), s.state.step))?;
    let mut ranks = Ranks::new(group, &s.model);
    ranks.use_device(s.config.train.device, &s.model, &s.optimizer)?;
    if let Some((description, software)) = ranks.device_info() {
        on_event(TrainEvent::Device { description, software });
    }
    on_event(TrainEvent::Started {
        family: s.config.model.family(),
        params: s.model.params().numel(),
        receptive_field: s.model.receptive_field(),
        vocab_size: s.tokenizer.vocab_size(),
        train_examples: s.dataset.num_examples(Split::Train),
        run_dir: run.root(),
        step: s.state.step,
        total_steps: s.state.total_steps,
        time_limit_s: s.state.time_limit_s,
    });
    let cfg = s.config.clone();
    let mut last_loss = None;
    let started = Instant::now();
    let start_step = s.state.step;
    let seconds_before = s.state.train_seconds;
    let mut budget = s.state.time_limit_s.map(|limit| TimeBudget::new(limit, seconds_before, start_step));
    // Batches one evaluation reads (for the time budget's reserve before the first one).
    let val_batches = s.dataset.num_examples(Split::Val).div_ceil(cfg.train.batch_size.max(1));
    let eval_batches = if cfg.train.eval_batches == 0 { val_batches } else { cfg.train.eval_batches.min(val_batches) };
    if budget.is_some() && budget_verdict(group, budget.as_ref(), s.state.step, eval_batches, false)?.0 {
        s.state.total_steps = s.state.step;
    }
    while s.state.step < s.state.total_steps {
        // The batch RNG's position before this step's batch: what a checkpoint of the
        // `step` completed steps must record for an exact resume.
        let rng_pos = s.rng.get_word_pos();
        // Every rank stops at the same step when any was interrupted.
        let cancelled = if group.is_distributed() { group.any(opts.cancel.is_cancelled(), "the check for Ctrl-C")? } else { opts.cancel.is_cancelled() };
        if cancelled {
            group.clear_interrupt();
            s.state.rng_word_pos = rng_pos.to_string();
            s.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
            ranks.sync(&mut s.model, Some(&mut s.optimizer))?;
            save(group, run, &s, &mut log, "saving the checkpoint")?;
            return Err(Error::Interrupted { step: s.state.step });
        }
        let step = s.state.step;
        let step_started = Instant::now();
        let (batch, settings) = next_step(&cfg, &s.dataset, &s.state, step, &mut s.rng)?;
        let lr = settings.lr;
        let stats = match ranks.step(&mut s.model, &mut s.optimizer, &batch, settings)? {
            StepOutcome::Done(stats) => stats,
            StepOutcome::Diverged { what } => return diverged(run, &s, &mut log, step, rng_pos, what, &ranks),
        };
        let step_s = step_started.elapsed().as_secs_f64().max(1e-9);
        s.state.step += 1;
        last_loss = Some(stats.loss);
        let tokens_per_s = stats.tokens as f64 / step_s;
        if let Some(log) = &mut log {
            let mut record = json!({
                "step": s.state.step, "loss": stats.loss, "lr": lr, "grad_norm": stats.grad_norm,
                "step_ms": (step_s * 1e6).round() / 1e3, "tokens_per_s": tokens_per_s.round(),
            });
            if group.is_distributed() {
                record["allreduce_ms"] = json!((stats.allreduce_ms * 1e3).round() / 1e3);
            }
            log.write(&record)?;
        }
        let steps_per_s = (s.state.step - start_step) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let train_seconds = seconds_before + started.elapsed().as_secs_f64();
        on_event(TrainEvent::Step { step: s.state.step, total_steps: s.state.total_steps, loss: stats.loss, tokens_per_s, steps_per_s, train_seconds });
        if budget.is_some() {
            let revise = s.state.step == FIRST_REVISION || (s.state.step > FIRST_REVISION && s.state.step.is_multiple_of(REVISE_EVERY));
            match budget_verdict(group, budget.as_ref(), s.state.step, eval_batches, revise)? {
                // This step is the last: its evaluation and checkpoint follow.
                (true, _) => s.state.total_steps = s.state.step,
                (false, Some(total)) => s.state.schedule_plan.push([s.state.step, total]),
                (false, None) => {}
            }
        }

        let at_eval = s.state.step.is_multiple_of(cfg.train.eval_every) || s.state.step == s.state.total_steps;
        let eval_started = Instant::now();
        if at_eval {
            evaluate_and_sample(&mut s, run, &mut log, opts.samples, &mut ranks, &mut *on_event)?;
        }
        let at_checkpoint = cfg.train.checkpoint_every > 0 && s.state.step.is_multiple_of(cfg.train.checkpoint_every);
        if at_eval || at_checkpoint {
            s.state.rng_word_pos = s.rng.get_word_pos().to_string();
            s.state.train_seconds = seconds_before + started.elapsed().as_secs_f64();
            ranks.sync(&mut s.model, Some(&mut s.optimizer))?;
            // Records up to this step reach the disk before the checkpoint that covers them.
            save(group, run, &s, &mut log, "saving a checkpoint")?;
        }
        if let (Some(b), true) = (&mut budget, at_eval) {
            b.record_final_cost(eval_started.elapsed().as_secs_f64());
        }
    }
    if let Some(log) = &mut log {
        log.flush()?;
        // The plot is a convenience: a failure to draw it must not fail a finished run.
        if let Err(e) = crate::run::plots::plot_run(run) {
            on_event(TrainEvent::Warning(format!("could not draw the loss plot: {e}")));
        }
    }
    Ok(TrainSummary {
        steps: s.state.step,
        steps_taken: s.state.step - start_step,
        final_train_loss: last_loss,
        best_val_loss: s.state.best_val_loss,
        params: s.model.params().numel(),
        moved_aside: s.moved_aside,
    })
}

/// Whether the time budget ends the run after `step` steps, and (when `revise`) the total
/// it now projects — by rank 0's clock on every rank, so that all ranks stop at the same
/// step and lay the schedule over the same total.
fn budget_verdict(group: &Group, budget: Option<&TimeBudget>, step: u64, eval_batches: usize, revise: bool) -> Result<(bool, Option<u64>)> {
    let Some(b) = budget else { return Ok((false, None)) };
    let stop = b.must_stop(step, eval_batches);
    let mut verdict = [u64::from(stop), if revise && !stop { b.projected_total(step, eval_batches) } else { 0 }];
    group.from_root_u64(&mut verdict, "the time budget")?;
    Ok((verdict[0] != 0, (revise && verdict[0] == 0).then_some(verdict[1])))
}

/// Rank 0 saves a checkpoint of `s` (after the records it covers reach the disk), once the
/// ranks are found to hold the same weights.
fn save(group: &Group, run: &RunDir, s: &Session, log: &mut Option<MetricsLog>, what: &str) -> Result<()> {
    check_same_weights(group, &s.model)?;
    on_root(group, what, || {
        if let Some(log) = log {
            log.sync()?;
        }
        run.save_checkpoint(&s.model, &s.optimizer, &s.state)
    })
    .map(|_| ())
}

/// Stops a diverged run: keeps (or writes) the last good checkpoint, then errors naming the
/// step and what was not finite. `rng_pos` is the batch RNG's position before the failing
/// step drew its batch, so the saved checkpoint is exactly the state after `step` steps.
fn diverged(run: &RunDir, s: &Session, log: &mut Option<MetricsLog>, step: u64, rng_pos: u128, what: String, ranks: &Ranks) -> Result<TrainSummary> {
    let group = &ranks.group;
    if s.model.params().params().iter().all(|p| p.value.all_finite()) {
        // The loss or a gradient failed before the update: the model is the last good
        // state (BatchNorm's running statistics are the ones after this step's forward).
        let mut state = s.state.clone();
        state.rng_word_pos = rng_pos.to_string();
        on_root(group, "saving the last good checkpoint", || {
            if let Some(log) = log {
                log.sync()?;
            }
            run.save_checkpoint(&s.model, &s.optimizer, &state)
        })?;
    } else {
        // The update failed in place: rebuild the last good state by replay (every rank
        // replays its share).
        on_root(group, "writing metrics.jsonl", || log.as_mut().map_or(Ok(()), MetricsLog::sync))?;
        save_last_good(s, run, step, group, ranks.device())?;
    }
    Err(Error::NonFinite { step: step + 1, what })
}

fn evaluate_and_sample(s: &mut Session, run: &RunDir, log: &mut Option<MetricsLog>, samples: bool, ranks: &mut Ranks, on_event: OnEvent<'_>) -> Result<()> {
    let group = &ranks.group.clone();
    let cfg = &s.config;
    share_buffers(group, &mut s.model)?;
    // The weights come back from a device here (best.safetensors, samples).
    ranks.sync(&mut s.model, None)?;
    let val = ranks.evaluate(&mut s.model, &s.dataset, Split::Val, cfg.train.batch_size, cfg.train.eval_batches)?;
    if let Some(log) = log {
        log.write(&json!({"step": s.state.step, "val_loss": val.loss}))?;
    }
    let best = s.state.best_val_loss.is_none_or(|b| val.loss < b);
    if best {
        s.state.best_val_loss = Some(val.loss);
        s.state.best_step = Some(s.state.step);
        on_root(group, "saving best.safetensors", || run.save_weights(BEST_FILE, &s.model, s.state.step))?;
    }
    on_event(TrainEvent::Eval { step: s.state.step, val_loss: val.loss, best });
    if samples && group.is_root() && (cfg.train.samples > 0 && s.model.can_step() || s.model.config().is_grid()) {
        let req = SampleRequest {
            count: cfg.train.samples,
            prompt: None,
            sampling: SamplingConfig { seed: cfg.seed.wrapping_add(s.state.step), max_tokens: 200, ..SamplingConfig::default() },
        };
        let drawn = sample_texts(&s.model, &s.tokenizer, s.dataset.kind(), s.dataset.grid_shape(), Some(&s.dataset), &req)?;
        on_event(TrainEvent::Samples(&drawn));
    }
    Ok(())
}
