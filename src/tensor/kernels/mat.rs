//! Strided matrix views and how a product's output starts: the vocabulary shared by the
//! product front end (`matmul`) and the AVX2 kernel (`sgemm`), so that neither imports the
//! other's module for it.

/// A read-only strided matrix view into a slice.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major (rows, cols) view starting at `data[0]`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// A strided view.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        Mat { data, rows, cols, row_stride, col_stride }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }

    /// Panics unless every element the view names lies inside `data` (the bounds every
    /// product relies on).
    pub(crate) fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// What a product's output starts from before `a · b` is added.
#[derive(Clone, Copy, Debug)]
pub enum Init<'a> {
    /// Zero: the output is overwritten.
    Zero,
    /// The output's current values.
    Accumulate,
    /// Every row starts as this vector (length n): a bias, without filling the output first.
    Rows(&'a [f32]),
}

impl Init<'_> {
    /// Writes the starting values into the `m` rows of `n` values of `dst`, `row_stride`
    /// apart (nothing when accumulating): for products that cannot start from them.
    pub fn fill(self, dst: &mut [f32], m: usize, n: usize, row_stride: usize) {
        if let Init::Accumulate = self {
            return;
        }
        for i in 0..m {
            let row = &mut dst[i * row_stride..i * row_stride + n];
            match self {
                Init::Rows(r) => row.copy_from_slice(r),
                _ => row.fill(0.0),
            }
        }
    }
}

impl<'a> Init<'a> {
    /// How the block of k starting at `pc` meets the output in a product computed block of
    /// k by block of k: whether the kernel adds to what the output holds, and the row it
    /// starts from instead of zero (first block only).
    pub(crate) fn block_start(self, pc: usize) -> (bool, Option<&'a [f32]>) {
        match self {
            Init::Rows(bias) if pc == 0 => (false, Some(bias)),
            Init::Zero | Init::Rows(_) => (pc > 0, None),
            Init::Accumulate => (true, None),
        }
    }
}

/// A product's output as the threads of one GEMM call share it: element (i, j) at
/// `ptr + i * row_stride + j`.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub ptr: *mut f32,
    pub row_stride: usize,
}

// SAFETY: an `Out` is only a pointer into the output of one GEMM call, which outlives every
// thread that receives a copy (they are joined before the call returns), and those threads
// only ever write disjoint (row, column) blocks of it.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared copies write disjoint blocks, never the same element.
unsafe impl Sync for Out {}

impl Out {
    /// Rows `first..first + count` of a dense output (row stride = row length) as a slice.
    ///
    /// # Safety
    /// The rows must be in bounds, and no other live reference may cover them.
    pub(crate) unsafe fn rows_mut<'a>(self, first: usize, count: usize) -> &'a mut [f32] {
        // SAFETY: the caller guarantees the rows are in bounds of the output and not aliased.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(first * self.row_stride), count * self.row_stride) }
    }
}

/// Writes the in-bounds `rows` x `cols` corner of an edge tile (`tile`, row stride
/// `tile_stride`, computed from zero) to `c` (row stride `rs`, its first column being column
/// `col` of the output): added to what `c` holds when `add`, else to the start row's values
/// or zero. The register-tile GEMMs (`sgemm`, `zgemm`) finish their partial tiles with it.
///
/// # Safety
/// `c` must be readable and writable for `rows` rows of stride `rs` and `cols` columns, and a
/// `start` row must hold at least `col + cols` values.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_edge_tile(
    c: *mut f32,
    rs: usize,
    tile: &[f32],
    tile_stride: usize,
    rows: usize,
    cols: usize,
    add: bool,
    start: Option<&[f32]>,
    col: usize,
) {
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: (i, j) lies in the corner the contract names.
            let dst = unsafe { c.add(i * rs + j) };
            // SAFETY: as above; `dst` is readable when `add`.
            let base = if add { unsafe { *dst } } else { start.map_or(0.0, |r| r[col + j]) };
            // SAFETY: as above.
            unsafe { *dst = base + tile[i * tile_stride + j] };
        }
    }
}

/// Rows per block handed to the epilogue of [`matmul_then`]. Against 96 and 288 in
/// alternating W1 runs, 192 was fastest: each block streams the packed right-hand side
/// once, and W1's 192 rows of logits (3.8 MB) still come back from L3 for the loss.
pub const EPILOGUE_ROWS: usize = 192;
