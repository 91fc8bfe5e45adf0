//! Building datasets: the seeded (or contiguous) split of a [`TokenStore`]'s lines, stream
//! chunks or grids, and the constructors from text, which tokenize through the same
//! `Encoder` path as a prepared corpus.

use std::ops::Range;
use std::sync::Arc;

use super::dataset::{Dataset, DatasetKind, LineOptions, Part};
use super::documents::{LineEncoder, LineRules, MemorySink};
use super::split::{SplitMode, Splits};
use super::store::TokenStore;
use crate::data::tokenize::{Encoder, Tokenizer};
use crate::{Error, Result};

/// A stream is cut into this many chunks (fewer when the text is short) that are dealt to the
/// splits; windows never cross a chunk boundary.
const STREAM_CHUNKS: usize = 100;

/// How to cut a store into examples and splits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub kind: DatasetKind,
    /// Window length (stream).
    pub block_size: usize,
    /// (width, height) of a grid (grid).
    pub grid: (usize, usize),
    pub splits: Splits,
    pub mode: SplitMode,
    pub seed: u64,
}

/// The items of each split, by [`Splits::assign_by`].
fn deal<T>(items: Vec<T>, layout: &Layout, unit: &str) -> Result<[Vec<T>; 3]> {
    let assignment = layout.splits.assign_by(layout.mode, items.len(), unit, layout.seed)?;
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    Ok(assignment.map(|ids| ids.into_iter().filter_map(|i| slots[i].take()).collect()))
}

impl Dataset {
    /// Cuts `store` (made by `tokenizer`) into examples and splits as `layout` says: its
    /// documents as lines or grid rows, or the whole stream as chunks of windows.
    pub fn from_store(store: Arc<TokenStore>, tokenizer: &Tokenizer, layout: &Layout) -> Result<Self> {
        layout.splits.validate()?;
        let specials = tokenizer.specials();
        let (parts, block_size, grid, max_seq_len) = match layout.kind {
            DatasetKind::Lines => {
                if store.num_docs() == 0 {
                    return Err(Error::Data("the corpus has no non-blank lines".into()));
                }
                let longest = (0..store.num_docs()).map(|d| store.doc(d).len()).max().unwrap_or(0);
                let parts = deal((0..store.num_docs()).collect(), layout, "lines")?.map(Part::Lines);
                (parts, 0, None, longest + 1)
            }
            DatasetKind::Stream => {
                let parts = stream_parts(&store, layout)?;
                (parts, layout.block_size, None, layout.block_size)
            }
            DatasetKind::Grid => {
                let (w, h) = layout.grid;
                if w == 0 || h == 0 {
                    return Err(Error::config("grid", format!("width and height must be at least 1, got {w}×{h}")));
                }
                let grids = grid_rows(&store, w, h);
                if grids.is_empty() {
                    return Err(Error::Data("the corpus has no text to lay out in grids".into()));
                }
                (deal(grids, layout, "grids")?.map(Part::Grid), 0, Some((h, w)), w * h)
            }
        };
        Ok(Dataset { kind: layout.kind, specials, tokenizer: tokenizer.clone(), store, parts, block_size, grid, max_seq_len, lookup: Default::default() })
    }

    /// One example per line of `text` (LF or CRLF line ends): `[<bos>, tokens…, <eos>]`.
    ///
    /// Lines that are empty or whitespace-only — or encode to no tokens after normalization —
    /// are skipped; other lines are kept as they are (no trimming). A line longer than
    /// `opts.max_line_len` tokens, or that the tokenizer rejects, is an error naming its
    /// 1-based line number. With `opts.dedupe`, later lines with the same tokens as an earlier
    /// one are dropped before the split. Too few lines for the splits is an [`Error::Data`].
    pub fn lines(text: &str, tok: &Tokenizer, opts: &LineOptions) -> Result<Self> {
        opts.splits.validate()?;
        if opts.max_line_len == 0 {
            return Err(Error::config("max_line_len", "must be at least 1"));
        }
        let rules = LineRules { dedupe: opts.dedupe, max_line_len: opts.max_line_len };
        let store = lines_store(text, tok, DatasetKind::Lines, rules)?;
        let layout = Layout { kind: DatasetKind::Lines, block_size: 0, grid: (0, 0), splits: opts.splits, mode: opts.split_mode, seed: opts.seed };
        Self::from_store(Arc::new(store), tok, &layout)
    }

    /// The whole `text` as one token stream, trained on windows of `block_size` tokens.
    ///
    /// The stream is cut into up to 100 contiguous chunks of equal length (at least
    /// `block_size + 1` tokens; the remainder joins the last chunk) and the chunks are dealt to
    /// the splits by `seed`, so no window mixes text of two splits. Text too short for one
    /// chunk per needed split is an [`Error::Data`] saying how many tokens are needed.
    pub fn stream(text: &str, tok: &Tokenizer, block_size: usize, splits: &Splits, seed: u64) -> Result<Self> {
        splits.validate()?;
        let ids = Encoder::new(tok)?.encode_stream(text)?;
        let layout = Layout { kind: DatasetKind::Stream, block_size, grid: (0, 0), splits: *splits, mode: SplitMode::Dealt, seed };
        Self::from_store(Arc::new(TokenStore::owned(ids, None)), tok, &layout)
    }

    /// `text` laid out as rows of `width` tokens, grouped into grids of `height` rows.
    ///
    /// Each line (LF or CRLF) is encoded separately and wrapped: tokens `0..W` form one row,
    /// `W..2W` the next, and so on; the last row of a line is padded with `<pad>`, and an empty
    /// line is a row of `<pad>` (the line break itself is not a token). Consecutive rows form
    /// grids; the last grid is filled with `<pad>` rows, and grids with no text at all are
    /// dropped. Grids are then dealt to the splits by `seed`.
    pub fn grid(text: &str, tok: &Tokenizer, width: usize, height: usize, splits: &Splits, seed: u64) -> Result<Self> {
        splits.validate()?;
        if width == 0 || height == 0 {
            return Err(Error::config("grid", format!("width and height must be at least 1, got {width}×{height}")));
        }
        let store = lines_store(text, tok, DatasetKind::Grid, LineRules { dedupe: false, max_line_len: usize::MAX })?;
        let layout = Layout { kind: DatasetKind::Grid, block_size: 0, grid: (width, height), splits: *splits, mode: SplitMode::Dealt, seed };
        Self::from_store(Arc::new(store), tok, &layout)
    }
}

/// The lines of `text` as documents in memory.
fn lines_store(text: &str, tok: &Tokenizer, kind: DatasetKind, rules: LineRules) -> Result<TokenStore> {
    let mut sink = MemorySink::default();
    let encoder = Encoder::new(tok)?;
    LineEncoder::new(&encoder, kind, rules).encode(text, 1, "", &mut sink)?;
    Ok(sink.into_store(true))
}

/// The stream's chunks per split, with each split's running count of window starts.
fn stream_parts(store: &TokenStore, layout: &Layout) -> Result<[Part; 3]> {
    let (n, block_size, splits) = (store.len(), layout.block_size, &layout.splits);
    if block_size == 0 {
        return Err(Error::config("block_size", "must be at least 1"));
    }
    let min_chunk = block_size + 1;
    let need = splits.min_items();
    if n < need * min_chunk {
        return Err(Error::Data(format!(
            "the corpus has {n} tokens; block_size {block_size} with splits {splits} needs at least {} ({need} chunks of block_size + 1 tokens)",
            need * min_chunk
        )));
    }
    let chunk_len = n.div_ceil(STREAM_CHUNKS).max(min_chunk);
    let n_chunks = (n / chunk_len).max(1);
    // Equal chunks; the remainder joins the last one.
    let chunks: Vec<Range<usize>> = (0..n_chunks).map(|i| i * chunk_len..if i + 1 == n_chunks { n } else { (i + 1) * chunk_len }).collect();
    Ok(deal(chunks, layout, "chunks")?.map(|chunks| {
        let cumulative = chunks
            .iter()
            .scan(0, |total, c| {
                *total += c.len() - block_size;
                Some(*total)
            })
            .collect();
        Part::Stream { chunks, cumulative }
    }))
}

/// The grids of a store's lines: each line wrapped into rows of `width` tokens (an empty line
/// is one row of `<pad>`), `height` rows per grid, the last grid filled with `<pad>` rows,
/// grids without any text dropped.
fn grid_rows(store: &TokenStore, width: usize, height: usize) -> Vec<Vec<Option<Range<usize>>>> {
    let mut rows: Vec<Option<Range<usize>>> = Vec::new();
    for d in 0..store.num_docs() {
        let line = store.doc(d);
        if line.is_empty() {
            rows.push(None);
        }
        rows.extend((line.start..line.end).step_by(width).map(|s| Some(s..(s + width).min(line.end))));
    }
    rows.chunks(height)
        .map(|grid| {
            let mut grid = grid.to_vec();
            grid.resize(height, None);
            grid
        })
        .filter(|grid| grid.iter().any(Option::is_some))
        .collect()
}
