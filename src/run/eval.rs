//! Evaluation: mean cross-entropy of a model over a split, and the derived perplexity and
//! bits per token.

use serde::Serialize;

use crate::cancel::CancelToken;
use crate::data::{Batch, Dataset, Split};
use crate::dist::Group;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::run::step::batch_shape;
use crate::tensor::Graph;

/// Loss of a model over (part of) a split.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub split: String,
    /// Mean cross-entropy in nats per predicted token.
    pub loss: f64,
    pub perplexity: f64,
    /// loss / ln 2.
    pub bits_per_token: f64,
    /// Predicted tokens counted.
    pub tokens: usize,
}

/// Mean loss over `max_batches` batches spread evenly over `split` (0 = all of it), in eval
/// mode.
pub fn evaluate(model: &mut Model, dataset: &Dataset, split: Split, batch_size: usize, max_batches: usize) -> Result<EvalReport> {
    evaluate_cancellable(model, dataset, split, batch_size, max_batches, &CancelToken::new())
}

/// [`evaluate`] that stops between batches with [`Error::Cancelled`] once `cancel` is
/// cancelled (`convlm eval` and Ctrl-C).
pub fn evaluate_cancellable(
    model: &mut Model,
    dataset: &Dataset,
    split: Split,
    batch_size: usize,
    max_batches: usize,
    cancel: &CancelToken,
) -> Result<EvalReport> {
    let seq_len = dataset.max_seq_len().max(1);
    let bytes = crate::run::memory::estimate_inference(model.config(), model.vocab_size(), batch_size, seq_len)?;
    let what = format!("scoring batches of {batch_size} × {seq_len} positions");
    crate::run::memory::check_bytes(&what, bytes, "lower --block-size or the run's batch size", crate::run::memory::available())?;
    crate::tensor::threads::on_pool(|| evaluate_on_pool(&Group::single(), model, dataset, split, batch_size, max_batches, cancel))
}

/// [`evaluate`] shared by the ranks of `group`, which must all call it (with the same model):
/// each scores every `size`-th of the chosen batches, and the sums are added up, so every
/// rank returns the report one process would (up to the order of the additions).
pub fn evaluate_in(group: &Group, model: &mut Model, dataset: &Dataset, split: Split, batch_size: usize, max_batches: usize) -> Result<EvalReport> {
    // The ranks must score the same batches: no rank stops alone (training checks for Ctrl-C
    // between steps, together).
    crate::tensor::threads::on_pool(|| evaluate_on_pool(group, model, dataset, split, batch_size, max_batches, &CancelToken::new()))
}

fn evaluate_on_pool(
    group: &Group,
    model: &mut Model,
    dataset: &Dataset,
    split: Split,
    batch_size: usize,
    max_batches: usize,
    cancel: &CancelToken,
) -> Result<EvalReport> {
    evaluate_batches(group, dataset, split, batch_size, max_batches, cancel, &mut |batch| {
        let mut g = Graph::new(false);
        let loss = model.loss(&mut g, &batch.inputs, &batch_shape(batch), &batch.targets, 0)?;
        Ok(g.value(loss).data()[0] as f64)
    })
}

/// [`evaluate_cancellable`] in one process with `loss_of` scoring each batch (its mean loss):
/// how a device other than the CPU engine evaluates, over the very same batches.
pub fn evaluate_with(
    dataset: &Dataset,
    split: Split,
    batch_size: usize,
    max_batches: usize,
    cancel: &CancelToken,
    loss_of: &mut dyn FnMut(&Batch) -> Result<f64>,
) -> Result<EvalReport> {
    evaluate_batches(&Group::single(), dataset, split, batch_size, max_batches, cancel, loss_of)
}

fn evaluate_batches(
    group: &Group,
    dataset: &Dataset,
    split: Split,
    batch_size: usize,
    max_batches: usize,
    cancel: &CancelToken,
    loss_of: &mut dyn FnMut(&Batch) -> Result<f64>,
) -> Result<EvalReport> {
    let (mut total, mut count) = (0.0f64, 0usize);
    // A limited evaluation takes batches spread evenly over the split, not its first ones:
    // a corpus file is often ordered (names.txt by popularity), and a prefix would be biased.
    let n_batches = dataset.num_examples(split).div_ceil(batch_size.max(1));
    // Batch i of the `chosen` is batch ⌊i·n/chosen⌋: spaced over the whole split (a whole
    // stride ⌊n/chosen⌋ would leave out the end of the split whenever n < 2·chosen).
    let chosen = if max_batches == 0 { n_batches } else { max_batches.min(n_batches) };
    // Only the chosen batches are read (a stepped iterator would build the skipped ones).
    // Each rank scores every size-th of them.
    let mine = (0..chosen).skip(group.rank()).step_by(group.size()).map(|i| evenly_spaced(i, n_batches, chosen));
    for index in mine {
        cancel.check()?;
        let batch = dataset.batch_at(split, index, batch_size);
        dataset.check_batch(&batch)?;
        let n = batch.num_targets();
        if n == 0 {
            continue;
        }
        total += loss_of(&batch)? * n as f64;
        count += n;
    }
    let (total, count) = if group.is_distributed() {
        let mut sums = [total, count as f64];
        group.sum_f64(&mut sums, "the evaluation")?;
        (sums[0], sums[1] as usize)
    } else {
        (total, count)
    };
    if count == 0 {
        return Err(Error::Data(format!("the {} split is empty: nothing to evaluate", split.name())));
    }
    let loss = total / count as f64;
    Ok(EvalReport { split: split.name().to_string(), loss, perplexity: loss.exp(), bits_per_token: loss / std::f64::consts::LN_2, tokens: count })
}

/// The `i`-th of `chosen` indices spread evenly over `0..n` (`i < chosen <= n`), without
/// overflow for any sizes.
fn evenly_spaced(i: usize, n: usize, chosen: usize) -> usize {
    (i as u128 * n as u128 / chosen.max(1) as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::evenly_spaced;

    #[test]
    fn chosen_batches_cover_the_whole_split() {
        // 30 batches, 20 chosen: the old whole stride (1) took batches 0..20 only.
        let picked: Vec<usize> = (0..20).map(|i| evenly_spaced(i, 30, 20)).collect();
        assert_eq!(picked.first(), Some(&0));
        assert_eq!(picked.last(), Some(&28));
        assert!(picked.windows(2).all(|w| w[1] > w[0]), "{picked:?}");
        let all: Vec<usize> = (0..7).map(|i| evenly_spaced(i, 7, 7)).collect();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        assert_eq!(evenly_spaced(1, usize::MAX, 2), usize::MAX / 2);
    }
}
