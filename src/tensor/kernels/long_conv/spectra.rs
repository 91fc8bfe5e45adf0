//! A small pool of complex buffers for filter spectra, as `kernels::scratch` is for f32.

use std::sync::{Mutex, PoisonError};

use rustfft::num_complex::Complex;

/// A buffer of spectra with UNSPECIFIED contents, to be written in full: taken from a small
/// pool and given back when dropped, as [`Scratch`] does for f32 buffers. The filter
/// spectra are C·N bins (2 MB at C = 128, T = 1024); a fresh zeroed vector cost its
/// zero-fill and page faults on every call.
pub(super) struct Spectra(Vec<Complex<f32>>);

static SPECTRA: Mutex<Vec<Vec<Complex<f32>>>> = Mutex::new(Vec::new());

impl Spectra {
    /// Buffers kept for reuse: a forward's and a backward's, with room for a second layer.
    const KEPT: usize = 4;

    pub(super) fn new(len: usize) -> Self {
        let mut pool = SPECTRA.lock().unwrap_or_else(PoisonError::into_inner);
        let best = (0..pool.len()).filter(|&i| pool[i].capacity() >= len).min_by_key(|&i| pool[i].capacity());
        let mut buf = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        drop(pool);
        buf.resize(len, Complex::new(0.0, 0.0));
        Spectra(buf)
    }
}

impl std::ops::Deref for Spectra {
    type Target = [Complex<f32>];
    fn deref(&self) -> &[Complex<f32>] {
        &self.0
    }
}

impl std::ops::DerefMut for Spectra {
    fn deref_mut(&mut self) -> &mut [Complex<f32>] {
        &mut self.0
    }
}

impl Drop for Spectra {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() == 0 {
            return;
        }
        let mut pool = SPECTRA.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < Self::KEPT {
            pool.push(buf);
        } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()).filter(|b| b.capacity() < buf.capacity()) {
            *smallest = buf;
        }
    }
}
