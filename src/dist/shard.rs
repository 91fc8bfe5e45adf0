//! Which rows of every global batch a rank trains on. Every rank draws the whole global
//! batch from the same seeded sampler (drawing is cheap next to a step) and keeps its own
//! contiguous rows, so the batches and their order do not depend on the number of ranks,
//! and each rank can count the global batch's targets without a message.

use std::ops::Range;

use crate::data::Batch;
use crate::error::{Error, Result};

/// Rows `[r·B/N, (r+1)·B/N)` of a batch of `batch_size` rows, for rank `rank` of `size`:
/// contiguous, as even as can be (sizes differ by one at most), together all rows once.
pub fn shard_rows(batch_size: usize, rank: usize, size: usize) -> Range<usize> {
    let size = size.max(1);
    let at = |r: usize| ((r as u128 * batch_size as u128) / size as u128) as usize;
    at(rank.min(size))..at((rank + 1).min(size))
}

/// Refuses a batch too small to give every rank a row.
pub fn check_batch_size(batch_size: usize, size: usize) -> Result<()> {
    if batch_size < size {
        return Err(Error::config("batch_size", format!("{batch_size} rows cannot be shared by {size} processes: give every process at least one row")));
    }
    Ok(())
}

/// Rank `rank`'s rows of `batch` (of `size` ranks), with the batch's row length.
pub fn shard(batch: &Batch, rank: usize, size: usize) -> Batch {
    let rows = shard_rows(batch.batch_size, rank, size);
    let span = rows.start * batch.seq_len..rows.end * batch.seq_len;
    Batch {
        inputs: batch.inputs[span.clone()].to_vec(),
        targets: batch.targets[span].to_vec(),
        batch_size: rows.len(),
        seq_len: batch.seq_len,
        grid: batch.grid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_row_once_in_order_and_evenly() {
        for b in 1..40 {
            for n in 1..=b.min(9) {
                let shards: Vec<Range<usize>> = (0..n).map(|r| shard_rows(b, r, n)).collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[n - 1].end, b);
                assert!(shards.windows(2).all(|w| w[0].end == w[1].start), "{b} rows over {n}: {shards:?}");
                let (lo, hi) = (shards.iter().map(Range::len).min().unwrap(), shards.iter().map(Range::len).max().unwrap());
                assert!(lo >= 1 && hi - lo <= 1, "{b} rows over {n}: {shards:?}");
            }
        }
        assert!(check_batch_size(3, 4).unwrap_err().to_string().contains("batch_size"));
        check_batch_size(4, 4).unwrap();
    }

    #[test]
    fn a_shard_holds_its_rows_inputs_and_targets() {
        let batch = Batch { inputs: (0..15).collect(), targets: (100..115).collect(), batch_size: 5, seq_len: 3, grid: None };
        let parts: Vec<Batch> = (0..2).map(|r| shard(&batch, r, 2)).collect();
        assert_eq!((parts[0].batch_size, parts[1].batch_size), (2, 3));
        assert_eq!(parts[0].inputs, (0..6).collect::<Vec<u32>>());
        assert_eq!(parts[1].targets, (106..115).collect::<Vec<i64>>());
        assert_eq!(parts[1].seq_len, 3);
    }
}
