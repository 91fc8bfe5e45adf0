//! Host-side launchers: one function per kernel, taking device tensors and sizes, packing the
//! parameter words and the workgroup grid. Ops (`tensor::gpu::ops`) and the optimizer call
//! these; nothing here allocates except reduction temporaries.

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod reduce;
pub(crate) mod step;

/// An f32 as a parameter word.
pub(crate) fn f(v: f32) -> u32 {
    v.to_bits()
}

/// A size or index as a parameter word (sizes are checked against the device's buffers,
/// whose element counts fit in u32, before a kernel is launched).
pub(crate) fn u(v: usize) -> u32 {
    v as u32
}
