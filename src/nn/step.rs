//! Incremental execution for generation (Paine et al. 2016, "Fast Wavenet Generation"): every
//! causal conv keeps a ring buffer of its last `(kernel_size - 1) * dilation + 1` inputs, so
//! one new position costs O(layers) instead of re-running the whole sequence.

use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::gemv::gemv_rows;
use crate::nn::layers::{BatchNorm1d, CausalConv1d, Embedding, LayerNorm, Linear, MaskedConv2d};
use crate::nn::long_conv::{LongConv, LongConvState};
use crate::nn::{Buffers, ParamStore};
use crate::tensor::{layernorm_row, matmul, sigmoid, Activation, Mat, Par, Tensor};

/// Per-layer ring buffers of a batch of sequences being generated; positions start at 0
/// (all history zero, as the causal left padding).
#[derive(Clone, Debug)]
pub struct StepState {
    batch: usize,
    /// Per causal conv: its last `span` inputs of every sequence, (B, span, C_in), written
    /// circularly at `position % span`.
    rings: Vec<Option<Vec<f32>>>,
    /// Per long conv: its filter and input history (see [`LongConvState`]), by slot.
    long: Vec<Option<LongConvState>>,
    /// Number of positions consumed so far.
    pub position: usize,
}

impl StepState {
    /// Fresh state for `batch` sequences of a model with `n_slots` causal convs.
    pub fn new(batch: usize, n_slots: usize) -> Self {
        StepState { batch, rings: vec![None; n_slots], long: vec![None; n_slots], position: 0 }
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// Runs a model forward for one position of every sequence; values are (B, 1, C).
pub struct StepBackend<'a> {
    store: &'a ParamStore,
    buffers: &'a Buffers,
    state: &'a mut StepState,
}

impl<'a> StepBackend<'a> {
    /// A backend that advances `state` by one position.
    pub fn new(store: &'a ParamStore, buffers: &'a Buffers, state: &'a mut StepState) -> Self {
        StepBackend { store, buffers, state }
    }

    fn value(&self, data: Vec<f32>, channels: usize) -> Tensor {
        Tensor::new(vec![self.state.batch, 1, channels], data).unwrap_or_default()
    }
}

fn channels(x: &Tensor) -> usize {
    *x.shape().last().unwrap_or(&0)
}

impl Backend for StepBackend<'_> {
    type Value = Tensor;

    fn embedding(&mut self, layer: &Embedding, ids: &[u32]) -> Result<Tensor> {
        if ids.len() != self.state.batch {
            return Err(Error::shape("step", format!("{} ids for a batch of {}", ids.len(), self.state.batch)));
        }
        let table = self.store.get(layer.weight).value.data();
        let e = layer.n_embd;
        let mut data = Vec::with_capacity(ids.len() * e);
        for &id in ids {
            if id as usize >= layer.vocab_size {
                return Err(Error::shape("step", format!("token id {id} is outside the vocabulary of {}", layer.vocab_size)));
            }
            data.extend_from_slice(&table[id as usize * e..(id as usize + 1) * e]);
        }
        Ok(self.value(data, e))
    }

    fn linear(&mut self, layer: &Linear, x: &Tensor) -> Result<Tensor> {
        let (n_in, n_out, b) = (layer.in_features, layer.out_features, self.state.batch);
        if channels(x) != n_in {
            return Err(Error::shape("step", format!("linear expects {n_in} channels, got {}", channels(x))));
        }
        let mut out = vec![0.0; b * n_out];
        let w = Mat::row_major(self.store.get(layer.weight).value.data(), n_out, n_in);
        matmul(&mut out, n_out, Mat::row_major(x.data(), b, n_in), w.t(), false, Par::Pool); // (B, Out)
        if let Some(bias) = layer.bias {
            crate::tensor::add_bias_rows(&mut out, self.store.get(bias).value.data());
        }
        Ok(self.value(out, n_out))
    }

    fn causal_conv(&mut self, layer: &CausalConv1d, x: &Tensor) -> Result<Tensor> {
        let (cin, cout, k, d, b) = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.dilation, self.state.batch);
        if channels(x) != cin {
            return Err(Error::shape("step", format!("conv expects {cin} channels, got {}", channels(x))));
        }
        let span = layer.span();
        let position = self.state.position;
        let ring = self.state.rings.get_mut(layer.slot).ok_or_else(|| Error::shape("step", "conv slot out of range"))?;
        let ring = ring.get_or_insert_with(|| vec![0.0; b * span * cin]);
        if ring.len() != b * span * cin {
            return Err(Error::shape("step", "conv slot reused with another shape"));
        }
        let slot_of = |back: usize| (position + span * (back / span + 1) - back) % span;
        let now = slot_of(0);
        for (bi, row) in x.data().chunks(cin).enumerate() {
            ring[(bi * span + now) * cin..(bi * span + now + 1) * cin].copy_from_slice(row);
        }
        let w = self.store.get(layer.weight).value.data();
        let mut out = vec![0.0; b * cout];
        if layer.groups > 1 {
            // Grouped (depthwise) convs are small: one direct sum per output channel.
            let (cin_g, cout_g) = (cin / layer.groups, cout / layer.groups);
            for tap in 0..k {
                let back = (k - 1 - tap) * d;
                if back > position {
                    continue; // still in the zero left padding
                }
                let s = slot_of(back);
                for bi in 0..b {
                    let src = &ring[(bi * span + s) * cin..(bi * span + s + 1) * cin];
                    for (o, y) in out[bi * cout..(bi + 1) * cout].iter_mut().enumerate() {
                        let g = o / cout_g;
                        for (ci, &xv) in src[g * cin_g..(g + 1) * cin_g].iter().enumerate() {
                            *y += w[(o * cin_g + ci) * k + tap] * xv;
                        }
                    }
                }
            }
        } else {
            // Gather the k taps of every sequence into (B, C_in * k), in the weight's (c, tap)
            // order, so the conv is a product with the contiguous (C_out, C_in * k) weight rows.
            // (Per-tap gemm calls on the strided (C_out, C_in) tap views made gemm re-pack the
            // whole weight on every call: 13 ms per W1 token, 90% of it packing.)
            let ck = cin * k;
            let mut taps = vec![0.0f32; b * ck];
            for tap in 0..k {
                let back = (k - 1 - tap) * d;
                if back > position {
                    continue; // still in the zero left padding
                }
                let s = slot_of(back);
                for bi in 0..b {
                    let src = &ring[(bi * span + s) * cin..(bi * span + s + 1) * cin];
                    for (dst, &v) in taps[bi * ck + tap..(bi + 1) * ck].iter_mut().step_by(k).zip(src) {
                        *dst = v;
                    }
                }
            }
            // out[b, o] = <w[o, :], taps[b, :]>: one pass over contiguous weight rows per
            // sequence. (gemm's GEMV path, m = 1, measured 5x slower than this on the W1 head,
            // 5000 x 384.)
            for (o_row, t) in out.chunks_mut(cout).zip(taps.chunks(ck)) {
                gemv_rows(w, t, o_row);
            }
        }
        if let Some(bias) = layer.bias {
            crate::tensor::add_bias_rows(&mut out, self.store.get(bias).value.data());
        }
        Ok(self.value(out, cout))
    }

    fn batchnorm(&mut self, layer: &BatchNorm1d, x: &Tensor) -> Result<Tensor> {
        let (_, mean, var) = &self.buffers.entries[layer.slot];
        let (gamma, beta) = (self.store.get(layer.weight).value.data(), self.store.get(layer.bias).value.data());
        let c = layer.channels;
        let mut out = x.clone();
        for row in out.data_mut().chunks_mut(c) {
            for j in 0..c {
                let inv_std = 1.0 / ((var.data()[j] as f64 + layer.eps as f64).sqrt());
                row[j] = (((row[j] - mean.data()[j]) as f64 * inv_std) as f32) * gamma[j] + beta[j];
            }
        }
        Ok(out)
    }

    fn layernorm(&mut self, layer: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        let c = layer.channels;
        if channels(x) != c {
            return Err(Error::shape("step", format!("layernorm expects {c} channels, got {}", channels(x))));
        }
        let (gamma, beta) = (self.store.get(layer.weight).value.data(), self.store.get(layer.bias).value.data());
        let mut out = x.clone();
        let mut xhat = vec![0.0f32; c];
        // The tape's own row function, so a step equals a forward.
        for (row, orow) in x.data().chunks(c.max(1)).zip(out.data_mut().chunks_mut(c.max(1))) {
            layernorm_row(row, gamma, beta, layer.eps, &mut xhat, orow);
        }
        Ok(out)
    }

    fn masked_conv2d(&mut self, _layer: &MaskedConv2d, _x: &Tensor) -> Result<Tensor> {
        Err(Error::shape("step", "a masked 2-D convolution has no incremental step; grid generation recomputes the grid"))
    }

    fn activation(&mut self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let mut out = x.clone();
        out.data_mut().iter_mut().for_each(|v| *v = act.apply(*v));
        Ok(out)
    }

    fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.shape() != b.shape() {
            return Err(Error::shape("step", "add of different shapes"));
        }
        let mut out = a.clone();
        out.data_mut().iter_mut().zip(b.data()).for_each(|(o, v)| *o += v);
        Ok(out)
    }

    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.shape() != b.shape() {
            return Err(Error::shape("step", "mul of different shapes"));
        }
        let mut out = a.clone();
        out.data_mut().iter_mut().zip(b.data()).for_each(|(o, v)| *o *= v);
        Ok(out)
    }

    /// Generation runs the evaluation maths: no dropout.
    fn dropout(&mut self, x: &Tensor, _p: f32) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn slice_channels(&mut self, x: &Tensor, start: usize, end: usize) -> Result<Tensor> {
        let c = channels(x);
        if start > end || end > c {
            return Err(Error::shape("step", format!("channels {start}..{end} of {c}")));
        }
        let data = x.data().chunks(c.max(1)).flat_map(|row| row[start..end].iter().copied()).collect();
        Ok(self.value(data, end - start))
    }

    fn long_conv(&mut self, layer: &LongConv, u: &Tensor) -> Result<Tensor> {
        let c = layer.spec.channels;
        if channels(u) != c {
            return Err(Error::shape("step", format!("long conv expects {c} channels, got {}", channels(u))));
        }
        let (store, batch) = (self.store, self.state.batch);
        let slot = self.state.long.get_mut(layer.slot).ok_or_else(|| Error::shape("step", "long conv slot out of range"))?;
        if slot.is_none() {
            *slot = Some(LongConvState::new(layer, batch, |id| store.get(id).value.clone())?);
        }
        let state = slot.as_mut().ok_or_else(|| Error::shape("step", "long conv state missing"))?;
        let y = state.step(self.state.position, u.data())?;
        Ok(self.value(y, c))
    }

    fn glu(&mut self, x: &Tensor) -> Result<Tensor> {
        let two_c = channels(x);
        let c = two_c / 2;
        let mut data = Vec::with_capacity(x.numel() / 2);
        for row in x.data().chunks(two_c.max(1)) {
            data.extend((0..c).map(|j| row[j] * sigmoid(row[c + j])));
        }
        Ok(self.value(data, c))
    }
}
