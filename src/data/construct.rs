//! Building datasets from text: lines, a stream of windows, or grids; then the seeded split.

use std::collections::HashSet;

use super::dataset::{line_example, Dataset, DatasetKind, LineOptions};
use super::split::Splits;
use super::tokenizer::Tokenizer;
use crate::{Error, Result};

/// A stream is cut into this many chunks (fewer when the text is short) that are dealt to the
/// splits; windows never cross a chunk boundary.
const STREAM_CHUNKS: usize = 100;

/// Adds "line N: " to a tokenizer error.
fn at_line(line: usize, e: Error) -> Error {
    match e {
        Error::Tokenizer(msg) => Error::Tokenizer(format!("line {line}: {msg}")),
        other => other,
    }
}

/// Deals `items` to the three splits by [`Splits::assign`].
fn deal(items: Vec<Vec<u32>>, splits: &Splits, unit: &str, seed: u64) -> Result<[Vec<Vec<u32>>; 3]> {
    let assignment = splits.assign(items.len(), unit, seed)?;
    let mut slots: Vec<Option<Vec<u32>>> = items.into_iter().map(Some).collect();
    Ok(assignment.map(|ids| ids.into_iter().filter_map(|i| slots[i].take()).collect()))
}

impl Dataset {
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
        let specials = tok.specials();
        let mut seen = HashSet::new();
        let mut examples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let tokens = tok.encode(line).map_err(|e| at_line(i + 1, e))?;
            if tokens.len() > opts.max_line_len {
                return Err(Error::Data(format!("line {} has {} tokens, more than max_line_len = {}", i + 1, tokens.len(), opts.max_line_len)));
            }
            if tokens.is_empty() || (opts.dedupe && !seen.insert(tokens.clone())) {
                continue;
            }
            examples.push(line_example(&tokens, specials));
        }
        if examples.is_empty() {
            return Err(Error::Data("the corpus has no non-blank lines".into()));
        }
        let parts = deal(examples, &opts.splits, "lines", opts.seed)?;
        let index = parts.each_ref().map(|examples| {
            let mut order: Vec<usize> = (0..examples.len()).collect();
            order.sort_unstable_by(|&a, &b| examples[a].cmp(&examples[b]));
            order
        });
        Ok(Dataset { kind: DatasetKind::Lines, specials, tokenizer: tok.clone(), parts, block_size: 0, grid: None, index })
    }

    /// The whole `text` as one token stream, trained on windows of `block_size` tokens.
    ///
    /// The stream is cut into up to 100 contiguous chunks of equal length (at least
    /// `block_size + 1` tokens; the remainder joins the last chunk) and the chunks are dealt to
    /// the splits by `seed`, so no window mixes text of two splits. Text too short for one
    /// chunk per needed split is an [`Error::Data`] saying how many tokens are needed.
    pub fn stream(text: &str, tok: &Tokenizer, block_size: usize, splits: &Splits, seed: u64) -> Result<Self> {
        splits.validate()?;
        if block_size == 0 {
            return Err(Error::config("block_size", "must be at least 1"));
        }
        let tokens = tok.encode(text)?;
        let min_chunk = block_size + 1;
        let need = splits.min_items();
        if tokens.len() < need * min_chunk {
            return Err(Error::Data(format!(
                "the corpus has {} tokens; block_size {block_size} with splits {splits} needs at least {} \
                 ({need} chunks of block_size + 1 tokens)",
                tokens.len(),
                need * min_chunk
            )));
        }
        let chunk_len = tokens.len().div_ceil(STREAM_CHUNKS).max(min_chunk);
        let n_chunks = tokens.len() / chunk_len;
        let mut chunks: Vec<Vec<u32>> = tokens.chunks(chunk_len).map(<[u32]>::to_vec).collect();
        if chunks.len() > n_chunks {
            let tail = chunks.pop().unwrap_or_default();
            if let Some(last) = chunks.last_mut() {
                last.extend(tail);
            }
        }
        let parts = deal(chunks, splits, "chunks", seed)?;
        let index = parts.each_ref().map(|chunks| {
            chunks
                .iter()
                .scan(0, |total, c| {
                    *total += c.len() - block_size;
                    Some(*total)
                })
                .collect()
        });
        let specials = tok.specials();
        Ok(Dataset { kind: DatasetKind::Stream, specials, tokenizer: tok.clone(), parts, block_size, grid: None, index })
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
        let pad = tok.specials().pad;
        let mut rows: Vec<Vec<u32>> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let tokens = tok.encode(line).map_err(|e| at_line(i + 1, e))?;
            if tokens.is_empty() {
                rows.push(vec![pad; width]);
            }
            for piece in tokens.chunks(width) {
                let mut row = piece.to_vec();
                row.resize(width, pad);
                rows.push(row);
            }
        }
        let grids: Vec<Vec<u32>> = rows
            .chunks(height)
            .map(|rows| {
                let mut grid = rows.concat();
                grid.resize(width * height, pad);
                grid
            })
            .filter(|grid| grid.iter().any(|&t| t != pad))
            .collect();
        if grids.is_empty() {
            return Err(Error::Data("the corpus has no text to lay out in grids".into()));
        }
        let parts = deal(grids, splits, "grids", seed)?;
        let specials = tok.specials();
        Ok(Dataset { kind: DatasetKind::Grid, specials, tokenizer: tok.clone(), parts, block_size: 0, grid: Some((height, width)), index: Default::default() })
    }
}
