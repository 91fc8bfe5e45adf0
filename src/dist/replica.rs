//! One rank's part in a data-parallel training step ([`Replica`]): the global mean loss
//! from each rank's own, and a backward pass whose gradients are summed over the ranks in
//! buckets as they become final.

use super::group::Group;
use super::reduce::GradReducer;
use crate::error::Result;
use crate::nn::ParamStore;
use crate::tensor::{Graph, Var};

/// What a rank needs to take its part in a step.
pub struct Replica<'a> {
    pub group: &'a Group,
    pub reducer: &'a mut GradReducer,
    /// Targets of the whole global batch that count in the loss (every rank counts them
    /// itself: every rank draws the whole batch).
    pub global_targets: usize,
}

impl Replica<'_> {
    /// The mean loss over the global batch, from this rank's mean `local_loss` over its
    /// `local_targets`: the sum over ranks of loss × targets, over the global targets, as
    /// one process computes it. The same value on every rank, so all agree on divergence.
    pub fn global_loss(&self, local_loss: f64, local_targets: usize) -> Result<f64> {
        let mut sum = [if local_targets == 0 { 0.0 } else { local_loss * local_targets as f64 }];
        self.group.sum_f64(&mut sum, "the loss")?;
        Ok(sum[0] / self.global_targets.max(1) as f64)
    }

    /// Back-propagates `loss` (this rank's mean over `local_targets`) on `graph` and leaves
    /// in `params`' gradients the gradient of the global mean: each rank's gradient scaled
    /// by its share of the targets, summed over the ranks while backward goes on. With
    /// `graph` `None` (a shard with no targets) this rank adds zeros.
    pub fn backward(&mut self, graph: Option<(&mut Graph, Var)>, params: &mut ParamStore, local_targets: usize) -> Result<()> {
        let scale = local_targets as f32 / self.global_targets.max(1) as f32;
        let (group, reducer) = (self.group, &mut *self.reducer);
        match graph {
            Some((g, loss)) => {
                reducer.begin(scale, g.params().iter().map(|&(_, key)| key))?;
                g.backward_with_hook(loss, &mut |key, grad| reducer.param_ready(group, key, grad))?;
            }
            None => reducer.begin(0.0, [])?,
        }
        reducer.finish(group, params)
    }
}
