//! Filter spectra in a buffer from the memory layer: complex values over a [`Scratch`] of
//! twice as many f32.

use rustfft::num_complex::Complex;

use crate::tensor::memory::Scratch;

/// A buffer of spectra with UNSPECIFIED contents, to be written in full ([`Spectra::new`]), or
/// zeros ([`Spectra::zeroed`]): a [`Scratch`] (so
/// from the CPU pool, given back when dropped) seen as complex values. The filter spectra
/// are C·N bins (2 MB at C = 128, T = 1024); a fresh zeroed vector cost its zero-fill and
/// page faults on every call.
pub(super) struct Spectra(Scratch);

impl Spectra {
    pub(super) fn new(len: usize) -> Self {
        Spectra(Scratch::new(2 * len))
    }

    /// `len` zeros, for spectra that are summed into.
    pub(super) fn zeroed(len: usize) -> Self {
        Spectra(Scratch::zeroed(2 * len))
    }
}

impl std::ops::Deref for Spectra {
    type Target = [Complex<f32>];
    fn deref(&self) -> &[Complex<f32>] {
        // SAFETY: `Complex<f32>` is `#[repr(C)]` {re, im}: two f32 with f32's alignment, so
        // the scratch's 2·len initialised f32 are len valid complex values, borrowed as long
        // as `self`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<Complex<f32>>(), self.0.len() / 2) }
    }
}

impl std::ops::DerefMut for Spectra {
    fn deref_mut(&mut self) -> &mut [Complex<f32>] {
        // SAFETY: as in `deref`, and the borrow of `self` is exclusive, so no other
        // reference to the scratch's values exists while this one lives.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<Complex<f32>>(), self.0.len() / 2) }
    }
}
