//! One training step — the one `convlm train` takes and `convlm bench` times: zero the
//! gradients, forward with the head fused into the loss, backward, clip, and update, all
//! with the pool's workers kept awake. Divergence is detected on the way at no extra cost:
//! the loss is a number already, the gradient norm (needed for clipping and the log) is
//! NaN or infinite exactly when a gradient is, and the optimizer checks its own output.
//!
//! In a data-parallel run ([`Replica`]) each rank takes the step on its shard of the global
//! batch: the loss is the global batch's mean (summed over the ranks), the gradients are
//! summed over the ranks in buckets during backward, and clipping and the update see the
//! summed gradient — the same on every rank, so every rank takes the same update and
//! reaches the same verdict on divergence.

use crate::data::Batch;
use crate::dist::Replica;
use crate::error::Result;
use crate::models::Model;
use crate::optim::{clip_grad_norm, first_non_finite, grad_norm, Optimizer};
use crate::tensor::threads::with_workers_awake;
use crate::tensor::{Graph, Precision};

/// How one step updates the model.
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    /// Learning rate of this step.
    pub lr: f32,
    /// Clip the global gradient norm to this value.
    pub clip_grad: Option<f32>,
    /// Seed of this step's dropout masks ([`dropout_seed`]).
    pub dropout_seed: u64,
    /// What the step's matmuls and convolutions compute in (forward and backward).
    pub precision: Precision,
}

/// The dropout seed of the step a run takes after `step` steps: a fixed function of the run's seed and the
/// step, so an exact resume draws the same masks as the uninterrupted run.
pub fn dropout_seed(run_seed: u64, step: u64) -> u64 {
    // SplitMix64's finaliser over the pair: nearby steps get unrelated seeds.
    let mut z = run_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a finished step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean cross-entropy of the batch (before the update).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Targets that counted in the loss (of the global batch, in a data-parallel step).
    pub tokens: usize,
    /// Milliseconds waited after backward for the gradient sums over the ranks (0 in one
    /// process).
    pub allreduce_ms: f64,
}

/// The outcome of a step.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// The model was updated.
    Done(StepStats),
    /// Something became NaN or infinite; `what` says what (`the loss`, `the gradient of
    /// <param>`, `parameter <param> after the update`). After a failed update the model and
    /// optimizer hold non-finite values: the caller recovers the last good state.
    Diverged { what: String },
}

/// Shape of a batch's token ids for the model: (B, T) or (B, H, W).
pub fn batch_shape(batch: &Batch) -> Vec<usize> {
    match batch.grid {
        Some((h, w)) => vec![batch.batch_size, h, w],
        None => vec![batch.batch_size, batch.seq_len],
    }
}

/// Takes one optimizer step on `batch`.
pub fn train_step(model: &mut Model, optimizer: &mut Optimizer, batch: &Batch, settings: StepSettings) -> Result<StepOutcome> {
    train_step_in(model, optimizer, batch, settings, None)
}

/// Takes one optimizer step on `batch` — this rank's shard of the global batch when
/// `replica` is given (every rank of the replica's group must call it with its shard).
pub fn train_step_in(
    model: &mut Model,
    optimizer: &mut Optimizer,
    batch: &Batch,
    settings: StepSettings,
    replica: Option<&mut Replica>,
) -> Result<StepOutcome> {
    let shape = batch_shape(batch);
    // The whole step, the update included, with the other workers kept awake between ops.
    with_workers_awake(|| -> Result<StepOutcome> {
        let (loss, tokens, allreduce_ms) = match replica {
            None => {
                model.params_mut().zero_grad();
                let mut g = Graph::new(true);
                g.set_precision(settings.precision)?;
                let loss_var = model.loss(&mut g, &batch.inputs, &shape, &batch.targets, settings.dropout_seed)?;
                let loss = g.value(loss_var).data()[0] as f64;
                if !loss.is_finite() {
                    return Ok(StepOutcome::Diverged { what: "the loss".into() });
                }
                g.backward(loss_var)?;
                model.params_mut().accumulate_grads(&g);
                (loss, batch.num_targets(), 0.0)
            }
            Some(replica) => {
                let local_targets = batch.num_targets();
                // A shard whose every target is ignored adds nothing (the loss refuses it).
                let mut g = Graph::new(true);
                g.set_precision(settings.precision)?;
                let local = if local_targets == 0 { None } else { Some(model.loss(&mut g, &batch.inputs, &shape, &batch.targets, settings.dropout_seed)?) };
                let local_loss = local.map_or(0.0, |v| g.value(v).data()[0] as f64);
                let loss = replica.global_loss(local_loss, local_targets)?;
                if !loss.is_finite() {
                    return Ok(StepOutcome::Diverged { what: "the loss".into() });
                }
                // Every gradient is overwritten by the summed one: no zeroing needed.
                replica.backward(local.map(|v| (&mut g, v)), model.params_mut(), local_targets)?;
                (loss, replica.global_targets, replica.reducer.stats().wait.as_secs_f64() * 1e3)
            }
        };
        let norm = match settings.clip_grad {
            Some(max) => clip_grad_norm(model.params_mut(), max) as f64,
            None => grad_norm(model.params()),
        };
        if !norm.is_finite() {
            // Only now is each gradient scanned, to name the first bad one.
            let name = first_non_finite(model.params()).unwrap_or_else(|| "a parameter".into());
            return Ok(StepOutcome::Diverged { what: format!("the gradient of {name}") });
        }
        if let Some(name) = optimizer.step(model.params_mut(), settings.lr) {
            return Ok(StepOutcome::Diverged { what: format!("parameter {name} after the update") });
        }
        Ok(StepOutcome::Done(StepStats { loss, grad_norm: norm, tokens, allreduce_ms }))
    })
}
