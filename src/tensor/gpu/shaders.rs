//! The WGSL kernels: one module per binding signature, each with its entry points.
//!
//! Every module starts with `prelude.wgsl`: binding 0 is a 256-byte uniform of u32 words
//! (`pu(i)`, `pf(i)` read word i as u32 or f32), and `flat(wid, nwg, lid, size)` numbers the
//! invocations of a 1-D grid laid out in two dimensions (see `GpuDevice::grid`). Storage
//! buffers follow at bindings 1, 2, … as the module's [`Shader::bindings`] says.

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}
use Access::{Read as R, Write as W};

/// One WGSL module and the storage bindings every entry point of it takes.
#[derive(Debug)]
pub(crate) struct Shader {
    pub name: &'static str,
    body: &'static str,
    pub bindings: &'static [Access],
}

impl Shader {
    /// The module's full source (prelude included).
    pub fn source(&self) -> String {
        format!("{}\n{}", include_str!("shaders/prelude.wgsl"), self.body)
    }
}

/// An entry point of a module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernel {
    pub shader: &'static Shader,
    pub entry: &'static str,
}

macro_rules! shader {
    ($id:ident, $name:literal, [$($b:ident),*]) => {
        pub(crate) static $id: Shader = Shader { name: $name, body: include_str!(concat!("shaders/", $name, ".wgsl")), bindings: &[$($b),*] };
    };
}

// x → y
shader!(UNARY, "unary", [R, W]);
// a, b → y
shader!(BINARY, "binary", [R, R, W]);
// rows of a (· b) → per-block column sums; blocks → column sums
shader!(COLSUM, "colsum", [R, R, W]);
// a, b, bias → c
shader!(GEMM, "gemm", [R, R, R, W]);
// targets, logits → gradient in place, row losses
shader!(LOSS, "loss", [R, W, W]);
// x → a scalar sum (loss, squared norms)
shader!(TOTAL, "total", [R, W]);
// table, ids → rows; gradient rows, permutation, segments → table gradient
shader!(EMBEDDING, "embedding", [R, R, W]);
// x, gamma, beta → y, xhat, inverse std
shader!(LAYERNORM, "layernorm", [R, R, R, W, W, W]);
// g, xhat, istd, gamma → gx
shader!(NORM_BACK, "norm_back", [R, R, R, R, W]);
// conv inputs, weights, bias → outputs (direct forms and their backward passes)
shader!(CONV_DIRECT, "conv_direct", [R, R, R, W]);
// im2col and its gather-adjoint
shader!(CONV_COLS, "conv_cols", [R, W]);
// Hyena's long causal convolution, forward and backward
shader!(LONG_CONV, "long_conv", [R, R, R, W]);
// optimizer updates: param, grad, first and second moments, step status
shader!(OPTIM, "optim", [W, R, W, W, W]);
// batchnorm: sums → statistics, running averages
shader!(BATCHNORM, "batchnorm", [R, W, W, W]);
// batchnorm: x, statistics, gamma, beta → y, xhat
shader!(BN_APPLY, "bn_apply", [R, R, R, R, W, W]);

/// `shader::entry` as a kernel.
pub(crate) const fn k(shader: &'static Shader, entry: &'static str) -> Kernel {
    Kernel { shader, entry }
}
