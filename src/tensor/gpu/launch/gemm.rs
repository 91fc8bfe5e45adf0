//! Launcher of the tiled GEMM (`gemm.wgsl`).

use super::u;
use crate::error::Result;
use crate::tensor::gpu::shaders::{k, GEMM};
use crate::tensor::gpu::tensor::GpuTensor;

/// A matrix operand: element (i, j) of product z is `t[off + z·zs + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
    pub zs: usize,
}

impl<'a> View<'a> {
    /// A row-major (rows, cols) matrix at the start of `t`.
    pub fn rows(t: &'a GpuTensor, cols: usize) -> Self {
        View { t, off: 0, rs: cols, cs: 1, zs: 0 }
    }

    /// The transpose.
    pub fn t(self) -> Self {
        View { rs: self.cs, cs: self.rs, ..self }
    }
}

/// Where C goes: element (i, j) of product z is `t[off + z·zs + i·rs + j]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Out<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub rs: usize,
    pub zs: usize,
}

impl<'a> Out<'a> {
    /// A row-major matrix with rows of `cols` values.
    pub fn rows(t: &'a GpuTensor, cols: usize) -> Self {
        Out { t, off: 0, rs: cols, zs: 0 }
    }
}

thread_local! {
    /// Forces a GEMM kernel on this thread: `Some(true)` the direct one, `Some(false)` the
    /// tiled one, `None` the device's (the self-check runs both on any adapter).
    static VARIANT: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the GEMM kernel forced (`direct`: no workgroup memory) on this thread.
pub(crate) fn with_variant<T>(direct: bool, f: impl FnOnce() -> T) -> T {
    let before = VARIANT.with(|v| v.replace(Some(direct)));
    let out = f();
    VARIANT.with(|v| v.set(before));
    out
}

/// `C(m, n) = (accumulate ? C : 0) + A(m, k)·B(k, n) (+ bias[bias_off + z·bias_zs + j])`
/// for `z` products (a grid of 64×64 tiles each).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    a: View,
    b: View,
    c: Out,
    (m, n, kd): (usize, usize, usize),
    z: usize,
    bias: Option<(&GpuTensor, usize, usize)>,
    accumulate: bool,
) -> Result<()> {
    let d = a.t.device();
    let flags = accumulate as u32 | if bias.is_some() { 2 } else { 0 };
    let (bias_t, bias_off, bias_zs) = match bias {
        Some((t, off, zs)) => (Some(t.raw()), off, zs),
        None => (None, 0, 0),
    };
    let words = [
        u(m),
        u(n),
        u(kd),
        u(a.off),
        u(a.rs),
        u(a.cs),
        u(a.zs),
        u(b.off),
        u(b.rs),
        u(b.cs),
        u(b.zs),
        u(c.off),
        u(c.rs),
        u(c.zs),
        flags,
        u(bias_off),
        u(bias_zs),
    ];
    let bufs = [Some(a.t.raw()), Some(b.t.raw()), bias_t, Some(c.t.raw())];
    let direct = VARIANT.with(|v| v.get()).unwrap_or(d.is_software());
    if direct {
        return d.dispatch(k(&GEMM, "gemm_direct"), &words, &bufs, [u(n.div_ceil(32)), u(m.div_ceil(32)), u(z)]);
    }
    d.dispatch(k(&GEMM, "gemm"), &words, &bufs, [u(n.div_ceil(64)), u(m.div_ceil(64)), u(z)])
}
