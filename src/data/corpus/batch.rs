//! Training batches: padded (B, T) token and target matrices.

use crate::tensor::IGNORE_INDEX;

/// One training batch: all positions of every sequence are trained at once.
///
/// `inputs` and `targets` are row-major (batch_size, seq_len). Rows shorter than `seq_len` are
/// padded at the end with `<pad>` inputs and [`IGNORE_INDEX`] targets, and every `<pad>`
/// target is [`IGNORE_INDEX`] too, so padding never counts in the loss. For grid datasets
/// `seq_len` = H·W and `grid` is `Some((H, W))` (row-major rows of the grid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input token ids, (batch_size, seq_len).
    pub inputs: Vec<u32>,
    /// Target ids, or [`IGNORE_INDEX`] where nothing is to be predicted, (batch_size, seq_len).
    pub targets: Vec<i64>,
    /// Number of rows B.
    pub batch_size: usize,
    /// Length T of every row.
    pub seq_len: usize,
    /// (H, W) for a batch of 2-D grids, `None` otherwise.
    pub grid: Option<(usize, usize)>,
}

impl Batch {
    /// Pads `(input, target)` rows (each pair of equal length) to the longest input; `pad` is
    /// the `<pad>` id. A target equal to `pad` becomes [`IGNORE_INDEX`].
    pub(crate) fn pad_rows<'a>(rows: &[(&'a [u32], &'a [u32])], pad: u32, grid: Option<(usize, usize)>) -> Batch {
        let seq_len = rows.iter().map(|(x, _)| x.len()).max().unwrap_or(0);
        let mut inputs = Vec::with_capacity(rows.len() * seq_len);
        let mut targets = Vec::with_capacity(rows.len() * seq_len);
        for (x, y) in rows {
            debug_assert_eq!(x.len(), y.len());
            inputs.extend_from_slice(x);
            inputs.resize(inputs.len() + seq_len - x.len(), pad);
            targets.extend(y.iter().map(|&t| if t == pad { IGNORE_INDEX } else { i64::from(t) }));
            targets.resize(targets.len() + seq_len - y.len(), IGNORE_INDEX);
        }
        Batch { inputs, targets, batch_size: rows.len(), seq_len, grid }
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch_size == 0
    }

    /// Inputs and targets of row `b`; panics if `b >= batch_size`.
    pub fn row(&self, b: usize) -> (&[u32], &[i64]) {
        let span = b * self.seq_len..(b + 1) * self.seq_len;
        (&self.inputs[span.clone()], &self.targets[span])
    }

    /// Number of targets that count in the loss (not [`IGNORE_INDEX`]).
    pub fn num_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE_INDEX).count()
    }
}
