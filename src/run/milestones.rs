//! What a training run does at some of its steps besides the step itself: the periodic
//! evaluation (validation loss, best model, samples), checkpoints, the time budget's verdict
//! and the last good checkpoint after a divergence — each agreed between the ranks of a
//! data-parallel run, rank 0 alone writing.

use serde_json::json;

use crate::data::Split;
use crate::dist::Group;
use crate::error::{Error, Result};
use crate::generate::SamplingConfig;
use crate::run::budget::TimeBudget;
use crate::run::checkpoint::{RunDir, BEST_FILE};
use crate::run::events::{OnEvent, TrainEvent};
use crate::run::metrics::MetricsLog;
use crate::run::ranks::{check_same_weights, on_root, share_buffers, Ranks};
use crate::run::samples::{sample_texts, SampleRequest};
use crate::run::session::{save_last_good, Session};

/// Whether the time budget ends the run after `step` steps, and (when `revise`) the total
/// it now projects — by rank 0's clock on every rank, so that all ranks stop at the same
/// step and lay the schedule over the same total.
pub(super) fn budget_verdict(group: &Group, budget: Option<&TimeBudget>, step: u64, eval_batches: usize, revise: bool) -> Result<(bool, Option<u64>)> {
    let Some(b) = budget else { return Ok((false, None)) };
    let stop = b.must_stop(step, eval_batches);
    let mut verdict = [u64::from(stop), if revise && !stop { b.projected_total(step, eval_batches) } else { 0 }];
    group.from_root_u64(&mut verdict, "the time budget")?;
    Ok((verdict[0] != 0, (revise && verdict[0] == 0).then_some(verdict[1])))
}

/// Rank 0 saves a checkpoint of `s` (after the records it covers reach the disk), once the
/// ranks are found to hold the same weights; the session remembers the step it saved.
pub(super) fn save(group: &Group, run: &RunDir, s: &mut Session, log: &mut Option<MetricsLog>, what: &str) -> Result<()> {
    check_same_weights(group, &s.model)?;
    on_root(group, what, || {
        if let Some(log) = log {
            log.sync()?;
        }
        run.save_checkpoint(&s.model, &s.optimizer, &s.state)
    })?;
    s.saved_step = Some(s.state.step);
    Ok(())
}

/// Stops a diverged run: keeps (or writes) the last good checkpoint, then gives the error
/// naming the step and what was not finite (or the error that kept the checkpoint from being
/// saved). `rng_pos` is the batch RNG's position before the failing step drew its batch, so
/// the saved checkpoint is exactly the state after `step` steps.
pub(super) fn diverged(run: &RunDir, s: &Session, log: &mut Option<MetricsLog>, step: u64, rng_pos: u128, what: String, ranks: &Ranks) -> Error {
    let group = &ranks.group;
    let mut keep_last_good = || -> Result<()> {
        if s.saved_step == Some(step) {
            // The checkpoint in the folder is the state after `step` steps: it stays as it
            // is (rewriting it from memory could only replace a good file with a worse one).
            on_root(group, "writing metrics.jsonl", || log.as_mut().map_or(Ok(()), MetricsLog::sync))?;
        } else if s.model.params().params().iter().all(|p| p.value.all_finite()) {
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
        Ok(())
    };
    keep_last_good().err().unwrap_or(Error::NonFinite { step: step + 1, what })
}

/// Runs `f` with the model's weights exchanged for the optimizer's moving averages (the
/// weights as they are without averages), and exchanges them back whatever `f` returns.
pub(super) fn with_averages<T>(s: &mut Session, ranks: &mut Ranks, f: impl FnOnce(&mut Session, &mut Ranks) -> Result<T>) -> Result<T> {
    ranks.swap_averages(&mut s.model, &mut s.optimizer);
    let out = f(s, ranks);
    ranks.swap_averages(&mut s.model, &mut s.optimizer);
    out
}

/// The periodic evaluation of the model as it is (the trainer passes the moving average of
/// the weights, through [`with_averages`]): the validation loss (returned), the best model,
/// and samples.
pub(super) fn evaluate_and_sample(
    s: &mut Session,
    run: &RunDir,
    log: &mut Option<MetricsLog>,
    samples: bool,
    ranks: &mut Ranks,
    on_event: OnEvent<'_>,
) -> Result<f64> {
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
            cancel: None,
        };
        let drawn = sample_texts(&s.model, &s.tokenizer, s.dataset.kind(), s.dataset.grid_shape(), Some(&s.dataset), &req)?;
        on_event(TrainEvent::Samples(&drawn));
    }
    Ok(val.loss)
}
