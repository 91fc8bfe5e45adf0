//! [`LongConv`]: Hyena's long causal convolution with its implicit filter (reference/models.py
//! `HyenaFilter` + `long_causal_conv`), and its generation state [`LongConvState`].
//!
//! The filter h (L, C) is generated from fixed positional features z (L, emb_dim) by a small
//! MLP whose activations are `sin(freq · x)` (one trainable `freq` vector shared by every
//! activation), then multiplied by a fixed exponential decay window per channel. z, t and
//! the decay rates are constants: computed from the configuration (the same formulas and
//! float32 `linspace` as the reference), cached, never saved. The skip weight D is the
//! filter's `bias` parameter.

use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::nn::builder::{Cost, Init, LayerKind, ModelBuilder};
use crate::nn::ParamId;
use crate::tensor::{Graph, Tensor, Var};

/// Hyper-parameters of one Hyena filter (`HyenaFilter(channels, max_len, emb_dim, width,
/// n_inner, freq, decay_fast, decay_slow, decay_target)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LongConvSpec {
    /// C: channels, one filter each.
    pub channels: usize,
    /// The longest sequence, and the length of the positional features.
    pub max_len: usize,
    /// Width of the positional features z: 1 + 2·bands, odd, at least 3.
    pub emb_dim: usize,
    /// Width of the filter MLP.
    pub width: usize,
    /// Hidden layers of the MLP after its first one (it has `n_inner + 1` sin layers).
    pub n_inner: usize,
    /// Initial value of every `freq` entry.
    pub freq: f32,
    /// Decay of the fastest channel: its window reaches `decay_target` at t = decay_fast.
    pub decay_fast: f32,
    /// Decay of the slowest channel.
    pub decay_slow: f32,
    /// Window value the decays are defined by (0 < target).
    pub decay_target: f32,
}

impl LongConvSpec {
    /// Errors (naming the reference's argument) on sizes the filter cannot be built with.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [("channels", self.channels), ("max_len", self.max_len), ("width", self.width)] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        if self.emb_dim < 3 || self.emb_dim.is_multiple_of(2) {
            return Err(Error::config("emb_dim", format!("must be odd and at least 3 (1 + 2·bands), got {}", self.emb_dim)));
        }
        for (field, v) in [("decay_fast", self.decay_fast), ("decay_slow", self.decay_slow), ("decay_target", self.decay_target)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(field, format!("must be a positive number, got {v}")));
            }
        }
        if !self.freq.is_finite() {
            return Err(Error::config("freq", format!("must be finite, got {}", self.freq)));
        }
        Ok(())
    }

    /// Multiply-adds of the filter network per position of the context.
    fn mult_adds_per_position(&self) -> u64 {
        let (e, w, c) = (self.emb_dim as u64, self.width as u64, self.channels as u64);
        e * w + self.n_inner as u64 * w * w + w * c
    }
}

/// The fixed inputs of a filter for its first `len` positions: z (len, emb_dim) and the decay
/// window (len, C).
#[derive(Debug, Default)]
struct Constants {
    len: usize,
    z: Vec<f32>,
    window: Vec<f32>,
}

/// `torch.linspace(start, end, n)` in float32: the same formula as PyTorch's CPU kernel
/// (from the start for the first half, from the end for the second).
fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    (0..n).map(|i| if i < n / 2 { start + step * i as f32 } else { end - step * (n - 1 - i) as f32 }).collect()
}

/// [`linspace_f32`] in float64.
fn linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| if i < n / 2 { start + step * i as f64 } else { end - step * (n - 1 - i) as f64 }).collect()
}

impl Constants {
    /// z and the window of `spec` for positions `0..len` (len ≤ max_len).
    fn new(spec: &LongConvSpec, len: usize) -> Self {
        let (e, c, max) = (spec.emb_dim, spec.channels, spec.max_len);
        let bands = (e - 1) / 2;
        let t = linspace_f32(0.0, 1.0, max); // (max_len)
        let f = linspace_f64(1e-4, (bands - 1) as f64, bands);
        let mut z = Vec::with_capacity(len * e); // (len, E) = [t, cos(f·w), -sin(f·w)]
        for (n, &tn) in t.iter().take(len).enumerate() {
            let w = 2.0 * std::f64::consts::PI * n as f64 / max as f64;
            z.push(tn);
            z.extend(f.iter().map(|&fb| (fb * w).cos() as f32));
            z.extend(f.iter().map(|&fb| -(fb * w).sin() as f32));
        }
        let target = (spec.decay_target as f64).ln();
        let deltas = linspace_f32((target / spec.decay_slow as f64) as f32, (target / spec.decay_fast as f64) as f32, c);
        let mut window = Vec::with_capacity(len * c); // (len, C) = exp(-t·|delta_c|)
        for &tn in t.iter().take(len) {
            window.extend(deltas.iter().map(|&d| (-(tn as f64) * (d as f64).abs()).exp() as f32));
        }
        Constants { len, z, window }
    }
}

/// The filter parameters as tape variables (what [`LongConv::filter`] reads).
#[derive(Clone, Debug)]
pub struct FilterVars {
    pub freq: Var,
    pub mlp: Vec<(Var, Var)>,
    pub out: Var,
}

/// Hyena's long convolution: `y = h * u + D ⊙ u` over the whole context, with the implicit
/// filter h of `HyenaFilter` and the skip weight D = `{name}.bias`.
#[derive(Clone, Debug)]
pub struct LongConv {
    pub spec: LongConvSpec,
    /// `{name}.freq` (width): the frequency of every sin activation.
    pub freq: ParamId,
    /// `{name}.bias` (C): the skip weight D.
    pub bias: ParamId,
    /// `{name}.mlp.{i}.weight` (width, in) and `.bias` (width).
    pub mlp: Vec<(ParamId, ParamId)>,
    /// `{name}.out.weight` (C, width), no bias.
    pub out: ParamId,
    /// Index of this layer's state in incremental generation.
    pub slot: usize,
    /// z and the window for the longest length asked for so far (shared by clones).
    constants: Arc<RwLock<Arc<Constants>>>,
}

impl LongConv {
    /// Registers, in the reference's `named_parameters()` order, `{name}.freq` (full of
    /// `spec.freq`), `{name}.bias` (N(0, 1), as `torch.randn`), `{name}.mlp.{i}.weight` and
    /// `.bias` (nn.Linear's default U(±1/√fan_in)) and `{name}.out.weight` (the same, no
    /// bias); z, t and the decays are not parameters.
    pub fn new(b: &mut ModelBuilder, name: &str, spec: LongConvSpec) -> Result<Self> {
        spec.validate()?;
        let first = b.next_id();
        let (c, w) = (spec.channels, spec.width);
        let freq = b.param(&format!("{name}.freq"), &[w], Init::Constant(spec.freq))?;
        let bias = b.param(&format!("{name}.bias"), &[c], Init::Normal(1.0))?;
        let mut mlp = Vec::with_capacity(spec.n_inner + 1);
        for i in 0..=spec.n_inner {
            let fan_in = if i == 0 { spec.emb_dim } else { w };
            let bound = 1.0 / (fan_in as f32).sqrt();
            let weight = b.param(&format!("{name}.mlp.{i}.weight"), &[w, fan_in], Init::Uniform(bound))?;
            let bias = b.param(&format!("{name}.mlp.{i}.bias"), &[w], Init::Uniform(bound))?;
            mlp.push((weight, bias));
        }
        let out = b.param(&format!("{name}.out.weight"), &[c, w], Init::Uniform(1.0 / (w as f32).sqrt()))?;
        let cost = Cost::LongConv { channels: c as u64, per_length: spec.mult_adds_per_position() };
        b.layer(name, LayerKind::LongConv, first, c, cost);
        let slot = b.state_slot();
        Ok(LongConv { spec, freq, bias, mlp, out, slot, constants: Arc::default() })
    }

    /// The filter parameters as variables, each made by `var` (recorded as trainable
    /// parameters on a training tape, as constants for generation).
    pub fn vars(&self, mut var: impl FnMut(ParamId) -> Var) -> FilterVars {
        FilterVars { freq: var(self.freq), mlp: self.mlp.iter().map(|&(w, b)| (var(w), var(b))).collect(), out: var(self.out) }
    }

    /// z and the window for at least `len` positions, computed on first need.
    fn constants(&self, len: usize) -> Result<Arc<Constants>> {
        if len > self.spec.max_len {
            return Err(Error::shape("long_conv", format!("a sequence of {len} steps is longer than max_len {}", self.spec.max_len)));
        }
        let cached = self.constants.read().unwrap_or_else(|e| e.into_inner()).clone();
        if cached.len >= len {
            return Ok(cached);
        }
        let fresh = Arc::new(Constants::new(&self.spec, len));
        *self.constants.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Records the filter taps for the first `len` positions on `g`:
    /// `h = (sin(freq · mlp(z)) … ) · out ⊙ window`, with position as the row, (len, C)
    /// (`HyenaFilter.filter(len)` before its transpose).
    pub fn filter(&self, g: &mut Graph, vars: &FilterVars, len: usize) -> Result<Var> {
        let consts = self.constants(len)?;
        let (e, c) = (self.spec.emb_dim, self.spec.channels);
        let mut h = g.constant(Tensor::from_slice(vec![len, e], &consts.z[..len * e])?); // (L, E)
        for &(w, bias) in &vars.mlp {
            h = g.linear(h, w, Some(bias))?; // (L, W)
            h = g.scale_channels(h, vars.freq)?;
            h = g.sin(h);
        }
        let h = g.linear(h, vars.out, None)?; // (L, C)
        let window = g.constant(Tensor::from_slice(vec![len, c], &consts.window[..len * c])?); // (L, C)
        g.mul(h, window)
    }
}

/// Generation state of one [`LongConv`] for a batch of sequences.
///
/// Choice: the filter depends on the parameters only, so it is computed once, for max_len
/// positions, on an eval tape with the same ops as the forward (so the two agree), and kept
/// with position as the row, (max_len, C); the layer's inputs are kept whole, one (B, C) row
/// per position. A step sums the t + 1 products of every channel directly: O(t·C) per
/// sequence and token, contiguous over channels. Recomputing the convolution by FFT at every
/// token would cost O(t log t · C) per token, and a recurrent (state-space) distillation of
/// the filter would only approximate it, so neither would keep `step` equal to `forward`.
/// The state belongs to the parameter values it was started with.
#[derive(Clone, Debug)]
pub struct LongConvState {
    /// h (max_len, C): taps with the lag as the row.
    taps: Vec<f32>,
    /// D (C).
    skip: Vec<f32>,
    /// Inputs so far, (positions, B, C).
    history: Vec<f32>,
    batch: usize,
}

impl LongConvState {
    /// A fresh state: the filter of `layer` from `params(id)` (the current parameter values)
    /// for max_len positions, and an empty history.
    pub fn new(layer: &LongConv, batch: usize, params: impl Fn(ParamId) -> Tensor) -> Result<Self> {
        let mut g = Graph::new(false);
        let vars = layer.vars(|id| g.constant(params(id)));
        let h = layer.filter(&mut g, &vars, layer.spec.max_len)?; // (max_len, C)
        let taps = g.value(h).data().to_vec();
        Ok(LongConvState { taps, skip: params(layer.bias).into_data(), history: Vec::new(), batch })
    }

    /// Takes the inputs `u` (B, C) of position `t` (earlier positions were given before; a
    /// position given again, after a step that failed further on, replaces its inputs) and
    /// returns its outputs (B, C): `y[b, c] = Σ_{s≤t} h[t−s, c]·u[b, s, c] + D[c]·u[b, t, c]`.
    pub fn step(&mut self, t: usize, u: &[f32]) -> Result<Vec<f32>> {
        let (c, bc) = (self.skip.len(), self.batch * self.skip.len());
        if u.len() != bc {
            return Err(Error::shape("long_conv step", format!("{} inputs for a batch of {} × {c} channels", u.len(), self.batch)));
        }
        if t * c >= self.taps.len() {
            return Err(Error::shape("long_conv step", format!("the filter covers {} positions; position {t} is past max_len", self.taps.len() / c.max(1))));
        }
        if self.history.len() < t * bc {
            return Err(Error::shape("long_conv step", format!("position {t} comes before the positions it follows")));
        }
        self.history.truncate(t * bc);
        self.history.extend_from_slice(u);
        let mut y: Vec<f32> = u.chunks(c.max(1)).flat_map(|row| row.iter().zip(&self.skip).map(|(&x, &d)| x * d)).collect();
        for (s, past) in self.history.chunks_exact(bc.max(1)).enumerate() {
            let tap = &self.taps[(t - s) * c..(t - s + 1) * c];
            for (yb, ub) in y.chunks_exact_mut(c.max(1)).zip(past.chunks_exact(c.max(1))) {
                yb.iter_mut().zip(ub.iter().zip(tap)).for_each(|(y, (&u, &k))| *y += k * u);
            }
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: usize, max_len: usize) -> LongConvSpec {
        LongConvSpec { channels, max_len, emb_dim: 5, width: 4, n_inner: 1, freq: 1.0, decay_fast: 0.3, decay_slow: 1.5, decay_target: 1e-2 }
    }

    #[test]
    fn linspace_matches_torch() {
        assert_eq!(linspace_f32(0.0, 1.0, 5), [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace_f32(2.0, 3.0, 1), [2.0]);
        let t = linspace_f32(0.0, 1.0, 7);
        assert_eq!((t[0], t[6]), (0.0, 1.0), "both ends exact");
        assert_eq!(linspace_f64(1e-4, 1.0, 2), [1e-4, 1.0]);
    }

    #[test]
    fn constants_are_the_reference_features_and_window() {
        let s = spec(3, 4);
        let c = Constants::new(&s, 4);
        // z row n = [t_n, cos(f·w_n), -sin(f·w_n)] with f = (1e-4, 1), w_n = 2πn/4.
        let row = |n: usize| &c.z[n * 5..(n + 1) * 5];
        assert_eq!(row(0), [0.0, 1.0, 1.0, -0.0, -0.0]);
        let r1 = row(1);
        assert!((r1[0] - 1.0 / 3.0).abs() < 1e-7 && r1[2].abs() < 1e-7 && (r1[4] + 1.0).abs() < 1e-7, "{r1:?}");
        // window[n, c] = exp(-t_n·|delta_c|), delta from ln(0.01)/1.5 to ln(0.01)/0.3.
        assert_eq!(&c.window[..3], [1.0, 1.0, 1.0]);
        let last = &c.window[9..12];
        assert!((last[0] - 0.01f32.powf(1.0 / 1.5)).abs() < 1e-6 && (last[2] - 0.01f32.powf(1.0 / 0.3)).abs() < 1e-7, "{last:?}");
        // Fewer rows are the first rows of the full table.
        let short = Constants::new(&s, 2);
        assert_eq!(short.z[..], c.z[..10]);
        assert_eq!(short.window[..], c.window[..6]);
    }

    fn layer_and_params(channels: usize, max_len: usize) -> (LongConv, crate::nn::ParamStore) {
        let mut b = ModelBuilder::new(3);
        let layer = LongConv::new(&mut b, "f", spec(channels, max_len)).unwrap();
        (layer, b.finish().unwrap().params)
    }

    #[test]
    fn a_step_is_the_direct_sum_and_a_repeated_position_replaces_its_inputs() {
        let (layer, store) = layer_and_params(2, 5);
        let mut state = LongConvState::new(&layer, 1, |id| store.get(id).value.clone()).unwrap();
        let (h, d) = (state.taps.clone(), store.get(layer.bias).value.data().to_vec()); // (5, 2), (2)
        let u = [[0.5f32, -1.0], [2.0, 0.25], [-0.75, 1.5]];
        state.step(0, &u[0]).unwrap();
        state.step(1, &[9.0, 9.0]).unwrap(); // a step that later failed: position 1 again
        state.step(1, &u[1]).unwrap();
        let y = state.step(2, &u[2]).unwrap();
        for c in 0..2 {
            let want = h[c] * u[2][c] + h[2 + c] * u[1][c] + h[4 + c] * u[0][c] + d[c] * u[2][c];
            assert!((y[c] - want).abs() < 1e-6, "channel {c}: {} vs {want}", y[c]);
        }
        let err = state.step(5, &u[0]).unwrap_err().to_string();
        assert!(err.contains("past max_len"), "{err}");
        let err = state.step(4, &u[0]).unwrap_err().to_string();
        assert!(err.contains("comes before"), "{err}");
        assert!(state.step(3, &[1.0]).is_err(), "one input for two channels");
    }

    #[test]
    fn the_filter_refuses_lengths_past_max_len() {
        let (layer, store) = layer_and_params(2, 5);
        let mut g = Graph::new(false);
        let vars = layer.vars(|id| g.constant(store.get(id).value.clone()));
        let err = layer.filter(&mut g, &vars, 6).unwrap_err().to_string();
        assert!(err.contains("longer than max_len 5"), "{err}");
        let h = layer.filter(&mut g, &vars, 5).unwrap();
        assert_eq!(g.shape(h), [5, 2]);
    }
}
