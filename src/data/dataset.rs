//! Datasets after splitting: examples per split, random batches and ordered evaluation batches.
//! The constructors ([`Dataset::lines`], [`Dataset::stream`], [`Dataset::grid`]) live in
//! `construct.rs`.

use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::split::{uniform_index, Split, Splits};
use super::{SpecialTokens, Tokenizer};

/// How a corpus is cut into examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// One example per line: `<bos> tokens <eos>` (names, sentences).
    Lines,
    /// One continuous token stream, trained on random windows (books, review folders).
    Stream,
    /// 2-D grids of fixed-width rows of text, for pixelcnn.
    Grid,
}

/// Options of a line dataset ([`Dataset::lines`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineOptions {
    /// Keep only the first of lines that encode to the same tokens (before splitting, so no
    /// example is in two splits). Default false.
    pub dedupe: bool,
    /// Longest allowed line in tokens (without `<bos>`/`<eos>`); a longer line is an error
    /// naming its 1-based line number. Default 1000.
    pub max_line_len: usize,
    /// Split fractions (default 0.8/0.1/0.1).
    pub splits: Splits,
    /// Seed of the split.
    pub seed: u64,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions { dedupe: false, max_line_len: 1000, splits: Splits::default(), seed: 0 }
    }
}

/// A tokenized corpus split into train/val/test, ready to batch.
///
/// What an "example" is depends on the kind:
/// * lines: one line `[<bos>, t1..tn, <eos>]`, trained as input `[<bos>, t1..tn]` and target
///   `[t1..tn, <eos>]`;
/// * stream: the split's token chunks hold every window of `block_size` tokens: input
///   `x[i..i+T]`, target `x[i+1..i+T+1]`. [`Dataset::sample_batch`] draws from every start `i`;
///   [`Dataset::batches`] and [`Dataset::num_examples`] use non-overlapping windows (starts
///   0, T, 2T… of each chunk, the last one shorter and padded) so each token is predicted once;
/// * grid: one H×W grid, input = target = the grid (the model masks itself), `<pad>` cells
///   ignored in the loss.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub(crate) kind: DatasetKind,
    pub(crate) specials: SpecialTokens,
    /// The tokenizer the corpus was encoded with (for [`Dataset::contains_line`]).
    pub(crate) tokenizer: Tokenizer,
    /// Per split: line examples, stream chunks, or flattened grids.
    pub(crate) parts: [Vec<Vec<u32>>; 3],
    /// Stream window length T (0 for other kinds).
    pub(crate) block_size: usize,
    /// (H, W) of a grid dataset.
    pub(crate) grid: Option<(usize, usize)>,
    /// Stream: per split, the cumulative number of window starts after each chunk.
    /// Lines: per split, example indices sorted by content (for [`Dataset::contains_line`]).
    pub(crate) index: [Vec<usize>; 3],
}

impl Dataset {
    /// How the corpus was cut into examples.
    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    /// The tokenizer the corpus was encoded with.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The special-token ids the dataset was built with.
    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    /// (H, W) of a grid dataset, `None` for the other kinds.
    pub fn grid_shape(&self) -> Option<(usize, usize)> {
        self.grid
    }

    /// The longest input row any batch can have: the longest line example minus one, the
    /// stream's block size, or H·W.
    pub fn max_seq_len(&self) -> usize {
        match self.kind {
            DatasetKind::Lines => self.parts.iter().flatten().map(|e| e.len() - 1).max().unwrap_or(0),
            DatasetKind::Stream => self.block_size,
            DatasetKind::Grid => self.grid.map_or(0, |(h, w)| h * w),
        }
    }

    /// Number of examples of a split: lines, grids, or non-overlapping stream windows (see
    /// [`Dataset`]); the rows that [`Dataset::batches`] yields.
    pub fn num_examples(&self, split: Split) -> usize {
        match self.kind {
            DatasetKind::Stream => self.parts[split.index()].iter().map(|c| (c.len() - 1).div_ceil(self.block_size)).sum(),
            _ => self.parts[split.index()].len(),
        }
    }

    /// Number of tokens in a split (for lines, `<bos>` and `<eos>` included).
    pub fn num_tokens(&self, split: Split) -> usize {
        self.parts[split.index()].iter().map(Vec::len).sum()
    }

    /// `batch_size` examples drawn uniformly with replacement from `split` (for streams, from
    /// every window start), padded to the longest; the draws are `batch_size` calls of
    /// `rng.next_u64()`, so a seeded `ChaCha8Rng` gives the same batch on every platform.
    /// An empty split (fraction 0) gives an empty batch.
    pub fn sample_batch(&self, split: Split, batch_size: usize, rng: &mut impl rand::Rng) -> Batch {
        let population = match self.kind {
            DatasetKind::Stream => self.index[split.index()].last().copied().unwrap_or(0),
            _ => self.parts[split.index()].len(),
        };
        let batch_size = if population == 0 { 0 } else { batch_size };
        let rows: Vec<(&[u32], &[u32])> = (0..batch_size).map(|_| self.sample_row(split, uniform_index(rng, population))).collect();
        Batch::pad_rows(&rows, self.specials.pad, self.grid)
    }

    /// Every example of `split` once, in order, `batch_size` per batch (the last may be
    /// smaller; a `batch_size` of 0 counts as 1), each padded to its longest row.
    pub fn batches(&self, split: Split, batch_size: usize) -> impl Iterator<Item = Batch> + '_ {
        let rows = self.eval_rows(split);
        let batch_size = batch_size.max(1);
        (0..rows.len()).step_by(batch_size).map(move |start| {
            let end = (start + batch_size).min(rows.len());
            Batch::pad_rows(&rows[start..end], self.specials.pad, self.grid)
        })
    }

    /// Whether `text`, encoded like a line of the corpus, is an example of `split`; always
    /// false for stream and grid datasets, and for text the tokenizer cannot encode.
    pub fn contains_line(&self, split: Split, text: &str) -> bool {
        if self.kind != DatasetKind::Lines {
            return false;
        }
        let Ok(tokens) = self.tokenizer.encode(text) else {
            return false;
        };
        let example = line_example(&tokens, self.specials);
        let examples = &self.parts[split.index()];
        self.index[split.index()].binary_search_by(|&i| examples[i].cmp(&example)).is_ok()
    }

    /// Input and target of sample `k` of `split` (a window start for streams).
    fn sample_row(&self, split: Split, k: usize) -> (&[u32], &[u32]) {
        let examples = &self.parts[split.index()];
        match self.kind {
            DatasetKind::Lines => {
                let e = &examples[k];
                (&e[..e.len() - 1], &e[1..])
            }
            DatasetKind::Grid => (&examples[k], &examples[k]),
            DatasetKind::Stream => {
                let cumulative = &self.index[split.index()];
                let chunk = cumulative.partition_point(|&c| c <= k);
                let start = k - if chunk == 0 { 0 } else { cumulative[chunk - 1] };
                let c = &examples[chunk];
                (&c[start..start + self.block_size], &c[start + 1..start + self.block_size + 1])
            }
        }
    }

    /// The rows of [`Dataset::batches`], in order.
    fn eval_rows(&self, split: Split) -> Vec<(&[u32], &[u32])> {
        let examples = &self.parts[split.index()];
        match self.kind {
            DatasetKind::Lines | DatasetKind::Grid => (0..examples.len()).map(|k| self.sample_row(split, k)).collect(),
            DatasetKind::Stream => {
                let t = self.block_size;
                examples
                    .iter()
                    .flat_map(|c| {
                        (0..c.len() - 1).step_by(t).map(move |s| {
                            let end = (s + t).min(c.len() - 1);
                            (&c[s..end], &c[s + 1..end + 1])
                        })
                    })
                    .collect()
            }
        }
    }
}

/// `[<bos>, tokens…, <eos>]`.
pub(crate) fn line_example(tokens: &[u32], specials: SpecialTokens) -> Vec<u32> {
    let mut example = Vec::with_capacity(tokens.len() + 2);
    example.push(specials.bos);
    example.extend_from_slice(tokens);
    example.push(specials.eos);
    example
}
