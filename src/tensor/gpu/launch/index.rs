//! Launchers of the index kernels (`embedding.wgsl`) and the host half of the embedding
//! gradient: the positions sorted by token id.

use super::u;
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, EMBEDDING};
use crate::tensor::gpu::tensor::{GpuIndex, GpuTensor};

/// `out[i, :] = table[ids[i], :]` for rows of `width` values.
pub(crate) fn gather(table: &GpuTensor, ids: &GpuIndex, out: &GpuTensor, width: usize) -> Result<()> {
    let d = table.device();
    let n = ids.len();
    d.dispatch(k(&EMBEDDING, "gather"), &[u(n), u(width)], &[Some(table.raw()), Some(ids.raw()), Some(out.raw())], d.grid(n * width, 256))
}

/// The embedding gradient's index: `[perm (n) | segment starts (uniq + 1) | unique ids (uniq)]`,
/// the positions stably sorted by id so that each id's rows are added in position order
/// (the order the CPU engine adds them in).
pub(crate) fn sorted_index(ids: &[u32]) -> (Vec<u32>, usize) {
    let n = ids.len();
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.sort_by_key(|&p| ids[p as usize]);
    let mut starts = Vec::new();
    let mut uniq = Vec::new();
    for (s, &p) in perm.iter().enumerate() {
        let id = ids[p as usize];
        if uniq.last() != Some(&id) {
            uniq.push(id);
            starts.push(s as u32);
        }
    }
    starts.push(n as u32);
    let count = uniq.len();
    let mut index = perm;
    index.extend(starts);
    index.extend(uniq);
    (index, count)
}

/// `table_grad[id, :] (+)= Σ g[i, :]` over the positions i holding id, from
/// [`sorted_index`]'s `index` (uploaded) for `n` ids with `uniq` distinct ones.
pub(crate) fn scatter_sorted(g: &GpuTensor, index: &GpuIndex, table_grad: &GpuTensor, n: usize, uniq: usize, width: usize, accumulate: bool) -> Result<()> {
    let d = g.device();
    let words = [u(uniq), u(width), u(n), accumulate as u32];
    d.dispatch(k(&EMBEDDING, "scatter_sorted"), &words, &[Some(g.raw()), Some(index.raw()), Some(table_grad.raw())], d.grid(uniq * width, 256))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorted_index_groups_positions_by_id_in_order() {
        let (index, uniq) = super::sorted_index(&[3, 1, 3, 0, 1, 3]);
        assert_eq!(uniq, 3);
        // perm: id 0 at 3; id 1 at 1, 4; id 3 at 0, 2, 5.
        assert_eq!(&index[..6], &[3, 1, 4, 0, 2, 5]);
        assert_eq!(&index[6..10], &[0, 1, 3, 6]);
        assert_eq!(&index[10..], &[0, 1, 3]);
    }
}
