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

/// Rows per block handed to the epilogue of [`matmul_then`]. Against 96 and 288 in
/// alternating W1 runs, 192 was fastest: each block streams the packed right-hand side
/// once, and W1's 192 rows of logits (3.8 MB) still come back from L3 for the loss.
pub const EPILOGUE_ROWS: usize = 192;
