//! [`Scratch`]: a kernel temporary taken from the CPU pool and given back when dropped.

use std::ops::{Deref, DerefMut};

use super::{host_pool, BufferPool, Fill, Usage};

/// A buffer of `len` values with UNSPECIFIED contents (values left by an earlier use, or
/// zeros), for a kernel output written in full before it is read: packed weights, explicit
/// columns, GEMM outputs that start from zero, the fused head's logits. Derefs to `[f32]`;
/// goes back to the pool when dropped.
pub struct Scratch {
    buf: Vec<f32>,
}

impl Scratch {
    /// `len` values from the pool ([`Usage::Scratch`], [`Fill::Stale`]).
    pub fn new(len: usize) -> Self {
        Scratch { buf: host_pool().take_vec(len, Fill::Stale, Usage::Scratch) }
    }

    /// `len` zeros from the pool ([`Usage::Scratch`], [`Fill::Zeros`]), for a kernel that adds
    /// into its temporary.
    pub fn zeroed(len: usize) -> Self {
        Scratch { buf: host_pool().take_vec(len, Fill::Zeros, Usage::Scratch) }
    }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        host_pool().give(std::mem::take(&mut self.buf));
    }
}
