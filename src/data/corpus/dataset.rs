//! Datasets after splitting: examples per split, random batches and ordered evaluation batches,
//! read from a [`TokenStore`] (in memory, or a prepared corpus read where asked) without copying
//! the corpus. The constructors live in `construct.rs`.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::split::{uniform_index, Split, SplitMode, Splits};
use super::store::{ids_hash, TokenStore};
use crate::data::tokenize::{SpecialTokens, Tokenizer};
use crate::error::{Error, Result};

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

impl DatasetKind {
    /// The kind as configs and flags spell it (`lines`, `stream`, `grid`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Lines => "lines",
            DatasetKind::Stream => "stream",
            DatasetKind::Grid => "grid",
        }
    }
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
    /// Dealt (default) or contiguous splits.
    pub split_mode: SplitMode,
    /// Seed of the split.
    pub seed: u64,
}

impl Default for LineOptions {
    fn default() -> Self {
        LineOptions { dedupe: false, max_line_len: 1000, splits: Splits::default(), split_mode: SplitMode::Dealt, seed: 0 }
    }
}

/// The examples of one split.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// Lines: the store's document ids.
    Lines(Vec<usize>),
    /// Stream: token ranges (chunks) and the number of window starts up to each chunk.
    Stream { chunks: Vec<Range<usize>>, cumulative: Vec<usize> },
    /// Grid: per grid, its rows: a token range (at most W tokens) or `None` for a row of
    /// `<pad>`.
    Grid(Vec<Vec<Option<Range<usize>>>>),
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
    pub(crate) store: Arc<TokenStore>,
    pub(crate) parts: [Part; 3],
    /// Stream window length T (0 for other kinds).
    pub(crate) block_size: usize,
    /// (H, W) of a grid dataset.
    pub(crate) grid: Option<(usize, usize)>,
    /// The longest input row any batch can have.
    pub(crate) max_seq_len: usize,
    /// Lines: per split, hashes of its lines' ids, built on the first lookup.
    pub(crate) lookup: [OnceLock<HashSet<u64>>; 3],
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
        self.max_seq_len
    }

    /// Number of examples of a split: lines, grids, or non-overlapping stream windows (see
    /// [`Dataset`]); the rows that [`Dataset::batches`] yields.
    pub fn num_examples(&self, split: Split) -> usize {
        match &self.parts[split.index()] {
            Part::Lines(docs) => docs.len(),
            Part::Grid(grids) => grids.len(),
            Part::Stream { chunks, .. } => chunks.iter().map(|c| (c.len() - 1).div_ceil(self.block_size)).sum(),
        }
    }

    /// Number of tokens in a split (for lines, `<bos>` and `<eos>` included; for grids, every
    /// cell).
    pub fn num_tokens(&self, split: Split) -> usize {
        match &self.parts[split.index()] {
            Part::Lines(docs) => docs.iter().map(|&d| self.store.doc(d).len() + 2).sum(),
            Part::Grid(grids) => grids.len() * self.grid.map_or(0, |(h, w)| h * w),
            Part::Stream { chunks, .. } => chunks.iter().map(Range::len).sum(),
        }
    }

    /// Number of examples [`Dataset::sample_batch`] draws from.
    fn population(&self, split: Split) -> usize {
        match &self.parts[split.index()] {
            Part::Stream { cumulative, .. } => cumulative.last().copied().unwrap_or(0),
            _ => self.num_examples(split),
        }
    }

    /// `batch_size` examples drawn uniformly with replacement from `split` (for streams, from
    /// every window start), padded to the longest; the draws are `batch_size` calls of
    /// `rng.next_u64()`, so a seeded `ChaCha8Rng` gives the same batch on every platform.
    /// An empty split (fraction 0) gives an empty batch.
    pub fn sample_batch(&self, split: Split, batch_size: usize, rng: &mut impl rand::Rng) -> Batch {
        let population = self.population(split);
        let batch_size = if population == 0 { 0 } else { batch_size };
        let rows: Vec<(Vec<u32>, Vec<u32>)> = (0..batch_size).map(|_| self.sample_row(split, uniform_index(rng, population))).collect();
        self.batch_of(&rows)
    }

    /// Errors unless every id of `batch` lies in the tokenizer's vocabulary. A prepared
    /// corpus is not read through when it is opened (its size does not matter), so a damaged
    /// `tokens.bin` shows only in the batches drawn from it, and so does a file that could not
    /// be read (truncated after it was opened): the error names it.
    pub fn check_batch(&self, batch: &Batch) -> Result<()> {
        if let (Some(e), Some(path)) = (self.store.take_read_error(), self.store.path()) {
            return Err(Error::io(path, e));
        }
        let v = self.tokenizer.vocab_size() as u64;
        let targets = batch.targets.iter().filter(|&&t| t >= 0).map(|&t| t as u64); // IGNORE_INDEX skipped
        let Some(id) = batch.inputs.iter().map(|&i| i as u64).chain(targets).find(|&id| id >= v) else { return Ok(()) };
        let msg = format!("holds token id {id}, outside the tokenizer's vocabulary of {v}: the file is damaged (prepare the corpus again)");
        Err(match self.store.path() {
            Some(path) => Error::bad_file(path, msg),
            None => Error::Data(format!("the corpus {msg}")),
        })
    }

    /// Every example of `split` once, in order, `batch_size` per batch (the last may be
    /// smaller; a `batch_size` of 0 counts as 1), each padded to its longest row.
    pub fn batches(&self, split: Split, batch_size: usize) -> impl Iterator<Item = Batch> + '_ {
        let batch_size = batch_size.max(1);
        (0..self.num_examples(split).div_ceil(batch_size)).map(move |i| self.batch_at(split, i, batch_size))
    }

    /// Batch `index` of [`Dataset::batches`] alone (reads only its own rows).
    pub fn batch_at(&self, split: Split, index: usize, batch_size: usize) -> Batch {
        let (n, batch_size) = (self.num_examples(split), batch_size.max(1));
        let start = index.saturating_mul(batch_size).min(n);
        let rows: Vec<(Vec<u32>, Vec<u32>)> = (start..(start + batch_size).min(n)).map(|k| self.eval_row(split, k)).collect();
        self.batch_of(&rows)
    }

    fn batch_of(&self, rows: &[(Vec<u32>, Vec<u32>)]) -> Batch {
        let slices: Vec<(&[u32], &[u32])> = rows.iter().map(|(x, y)| (x.as_slice(), y.as_slice())).collect();
        Batch::pad_rows(&slices, self.specials.pad, self.grid)
    }

    /// Whether `text`, encoded like a line of the corpus, is an example of `split`; always
    /// false for stream and grid datasets, and for text the tokenizer cannot encode. (Lines
    /// are compared by a 64-bit hash of their ids.)
    pub fn contains_line(&self, split: Split, text: &str) -> bool {
        let Part::Lines(docs) = &self.parts[split.index()] else { return false };
        let Ok(tokens) = self.tokenizer.encode(text) else { return false };
        let set = self.lookup[split.index()].get_or_init(|| docs.iter().map(|&d| ids_hash(&self.store.read(self.store.doc(d)))).collect());
        set.contains(&ids_hash(&tokens))
    }

    /// The `<bos> line <eos>` example of document `d`.
    fn line_example(&self, d: usize) -> Vec<u32> {
        let mut example = vec![self.specials.bos];
        self.store.read_into(self.store.doc(d), &mut example);
        example.push(self.specials.eos);
        example
    }

    /// The flattened cells of a grid.
    fn grid_cells(&self, rows: &[Option<Range<usize>>]) -> Vec<u32> {
        let (_, w) = self.grid.unwrap_or((0, 0));
        let mut cells = Vec::with_capacity(rows.len() * w);
        for row in rows {
            let start = cells.len();
            if let Some(r) = row {
                self.store.read_into(r.clone(), &mut cells);
            }
            cells.resize(start + w, self.specials.pad);
        }
        cells
    }

    /// Input and target of sample `k` of `split` (a window start for streams).
    fn sample_row(&self, split: Split, k: usize) -> (Vec<u32>, Vec<u32>) {
        match &self.parts[split.index()] {
            Part::Lines(docs) => {
                let e = self.line_example(docs[k]);
                (e[..e.len() - 1].to_vec(), e[1..].to_vec())
            }
            Part::Grid(grids) => {
                let cells = self.grid_cells(&grids[k]);
                (cells.clone(), cells)
            }
            Part::Stream { chunks, cumulative } => {
                let chunk = cumulative.partition_point(|&c| c <= k);
                let start = chunks[chunk].start + k - if chunk == 0 { 0 } else { cumulative[chunk - 1] };
                let w = self.store.read(start..start + self.block_size + 1);
                (w[..self.block_size].to_vec(), w[1..].to_vec())
            }
        }
    }

    /// Row `k` of [`Dataset::batches`].
    fn eval_row(&self, split: Split, k: usize) -> (Vec<u32>, Vec<u32>) {
        let Part::Stream { chunks, .. } = &self.parts[split.index()] else { return self.sample_row(split, k) };
        let t = self.block_size;
        // Non-overlapping windows: chunk by chunk, starts 0, T, 2T…; the last one shorter.
        let mut k = k;
        for c in chunks {
            let n = (c.len() - 1).div_ceil(t);
            if k < n {
                let s = c.start + k * t;
                let end = (s + t).min(c.end - 1);
                let w = self.store.read(s..end + 1);
                return (w[..w.len() - 1].to_vec(), w[1..].to_vec());
            }
            k -= n;
        }
        (Vec::new(), Vec::new())
    }
}
