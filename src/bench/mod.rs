//! Training-step benchmarks W1/W2/W3 of `../shared/bench/WORKLOADS.md`, built directly from
//! the engine ops so that `convlm bench` and `bench_pytorch.py` time the same work:
//! one step = zero_grad + forward + loss + backward + Adam update on one fixed batch.
//!
//! The report prints as the same one-line JSON as the PyTorch script (plus extras).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nn::{ParamId, ParamStore};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::tensor::{threads, Conv1dSpec, ConvTranspose1dSpec, Graph, Padding, Tensor, Var};

/// Which benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// "reviews-cnn": V=5000, E=256, C=128, K=3, 7 convs, B=16, L=256.
    W1,
    /// "names-dilated": V=28, E=24, C=128, K=2, dilations 1,2,4,8, B=32, L=24.
    W2,
    /// "strided+grouped": strided/grouped/dilated conv + conv_transpose, B=16, L=128.
    W3,
}

impl Workload {
    /// `"w1"`, `"w2"` or `"w3"`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
        }
    }

    /// (vocabulary, batch, length, expected parameter count).
    pub fn dims(self) -> (usize, usize, usize, usize) {
        match self {
            Workload::W1 => (5000, 16, 256, 3_549_832),
            Workload::W2 => (28, 32, 24, 109_244),
            Workload::W3 => (64, 16, 128, 72_064),
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "w1" => Ok(Workload::W1),
            "w2" => Ok(Workload::W2),
            "w3" => Ok(Workload::W3),
            _ => Err(Error::config("workload", format!("must be w1, w2 or w3, got `{s}`"))),
        }
    }
}

/// Settings of one benchmark run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workload: Workload,
    /// Counted (timed) steps, at least 1.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// rayon threads (0 = `CONVLM_THREADS` or every core).
    pub threads: usize,
    /// Seed of the parameters and of the token batch.
    pub seed: u64,
}

/// Result of a run; serializes to the keys of `bench_pytorch.py` (same order) plus extras.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub framework: String,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub loss_first: f64,
    pub loss_last: f64,
    pub params: usize,
    /// Peak resident set (VmHWM) in MiB; None off Linux.
    pub peak_rss_mb: Option<f64>,
    pub first_step_ms: f64,
    pub threads: usize,
    pub steps: usize,
    pub warmup: usize,
    /// FLOPs of one step's convolutions (forward + both backward GEMMs), W1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflop_per_step: Option<f64>,
    /// `gflop_per_step` / median step time, W1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
}

impl BenchReport {
    /// The report as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn round_to(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Peak resident set size in MiB from `/proc/self/status` (VmHWM); None where unavailable.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// A conv layer's parameters and spec.
struct Conv {
    w: ParamId,
    b: ParamId,
    kind: ConvSpec,
}

enum ConvSpec {
    Conv(Conv1dSpec),
    Transpose(ConvTranspose1dSpec),
}

impl Conv {
    /// Registers `{name}.weight`/`{name}.bias` with PyTorch's default U(±1/sqrt(fan_in)).
    fn new(store: &mut ParamStore, name: &str, kind: ConvSpec, rng: &mut impl Rng) -> Self {
        let (w_shape, out_ch) = match &kind {
            ConvSpec::Conv(s) => (s.weight_shape(), s.out_channels),
            ConvSpec::Transpose(s) => (s.weight_shape(), s.out_channels),
        };
        // PyTorch's fan_in is weight.size(1) * kernel for both Conv1d and ConvTranspose1d.
        let bound = 1.0 / ((w_shape[1] * w_shape[2]) as f32).sqrt();
        let w = store.add(format!("{name}.weight"), Tensor::uniform(w_shape.to_vec(), bound, rng));
        let b = store.add(format!("{name}.bias"), Tensor::uniform(vec![out_ch], bound, rng));
        Conv { w, b, kind }
    }

    fn forward(&self, g: &mut Graph, store: &ParamStore, x: Var) -> Result<Var> {
        let (w, b) = (store.record(g, self.w), store.record(g, self.b));
        match &self.kind {
            ConvSpec::Conv(s) => g.conv1d(x, w, Some(b), s),
            ConvSpec::Transpose(s) => g.conv_transpose1d(x, w, Some(b), s),
        }
    }
}

fn conv(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> ConvSpec {
    ConvSpec::Conv(Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride, padding, dilation, groups })
}

/// Pointwise activation after a layer.
#[derive(Clone, Copy)]
enum Act {
    None,
    Relu,
    Tanh,
}

/// One of the three benchmark models: an embedding, a stack of convs, a fused loss.
pub struct BenchModel {
    workload: Workload,
    store: ParamStore,
    embedding: ParamId,
    layers: Vec<(Conv, Act)>,
}

impl BenchModel {
    /// Builds the model of `workload` with parameters drawn from `rng`.
    pub fn new(workload: Workload, rng: &mut impl Rng) -> Self {
        let mut store = ParamStore::new();
        let (v, e) = match workload {
            Workload::W1 => (5000, 256),
            Workload::W2 => (28, 24),
            Workload::W3 => (64, 64),
        };
        let embedding = store.add("embedding.weight", Tensor::randn(vec![v, e], 1.0, rng));
        let mut layers = Vec::new();
        match workload {
            Workload::W1 => {
                let (c, k) = (128, 3);
                let none = Padding::Asymmetric { left: 0, right: 0 };
                layers.push((Conv::new(&mut store, "conv0", conv(e, c, k, 1, none, 1, 1), rng), Act::None));
                for i in 0..5 {
                    let spec = conv(c, c, k, 1, Padding::causal(k, 1), 1, 1);
                    layers.push((Conv::new(&mut store, &format!("convs.{i}"), spec, rng), Act::Relu));
                }
                let spec = conv(c, v, k, 1, Padding::causal(k, 1), 1, 1);
                layers.push((Conv::new(&mut store, "conv_out", spec, rng), Act::None));
            }
            Workload::W2 => {
                let (c, k) = (128, 2);
                for (i, d) in [1usize, 2, 4, 8].into_iter().enumerate() {
                    let c_in = if i == 0 { e } else { c };
                    let spec = conv(c_in, c, k, 1, Padding::causal(k, d), d, 1);
                    layers.push((Conv::new(&mut store, &format!("convs.{i}"), spec, rng), Act::Tanh));
                }
                let spec = conv(c, v, 1, 1, Padding::Symmetric(0), 1, 1);
                layers.push((Conv::new(&mut store, "conv_out", spec, rng), Act::None));
            }
            Workload::W3 => {
                let spec = conv(e, 128, 3, 2, Padding::Symmetric(1), 1, 4);
                layers.push((Conv::new(&mut store, "conv1", spec, rng), Act::Relu));
                let spec = conv(128, 128, 3, 1, Padding::Symmetric(2), 2, 2);
                layers.push((Conv::new(&mut store, "conv2", spec, rng), Act::Relu));
                let spec = ConvTranspose1dSpec {
                    in_channels: 128,
                    out_channels: 64,
                    kernel_size: 4,
                    stride: 2,
                    padding: 1,
                    output_padding: 0,
                    dilation: 1,
                    groups: 1,
                };
                layers.push((Conv::new(&mut store, "deconv", ConvSpec::Transpose(spec), rng), Act::None));
                let spec = conv(64, v, 1, 1, Padding::Symmetric(0), 1, 1);
                layers.push((Conv::new(&mut store, "conv_out", spec, rng), Act::None));
            }
        }
        BenchModel { workload, store, embedding, layers }
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Input ids of the workload for a (B, L) token batch: W1 shifts right by K=3 pad tokens
    /// (V-1) and drops the last token (length L+2); W2 shifts right by one start token 0;
    /// W3 uses the tokens as they are. Returns (ids, per-row length).
    fn input_ids(&self, tokens: &[u32], batch: usize, len: usize) -> (Vec<u32>, usize) {
        let (v, ..) = self.workload.dims();
        let (shift, fill) = match self.workload {
            Workload::W1 => (3, v as u32 - 1),
            Workload::W2 => (1, 0),
            Workload::W3 => (0, 0),
        };
        let row_len = len + shift.max(1) - 1;
        let mut ids = Vec::with_capacity(batch * row_len);
        for row in tokens.chunks(len) {
            ids.extend(std::iter::repeat_n(fill, shift));
            ids.extend_from_slice(&row[..row_len - shift]);
        }
        (ids, row_len)
    }

    /// Forward pass to the loss (mean cross-entropy against `tokens`) on `g`. The output
    /// conv and the loss run fused ([`Graph::conv1d_cross_entropy`]).
    pub fn loss(&self, g: &mut Graph, tokens: &[u32], targets: &[i64], batch: usize, len: usize) -> Result<Var> {
        let (ids, row_len) = self.input_ids(tokens, batch, len);
        let table = self.store.record(g, self.embedding);
        let mut h = g.embedding(table, &ids, &[batch, row_len])?;
        let Some(((head, _), hidden)) = self.layers.split_last() else {
            return Err(Error::config("workload", "model has no layers"));
        };
        for (layer, act) in hidden {
            h = layer.forward(g, &self.store, h)?;
            h = match act {
                Act::None => h,
                Act::Relu => g.relu(h),
                Act::Tanh => g.tanh(h),
            };
        }
        match &head.kind {
            ConvSpec::Conv(spec) => {
                let (w, b) = (self.store.record(g, head.w), self.store.record(g, head.b));
                g.conv1d_cross_entropy(h, w, Some(b), spec, targets)
            }
            ConvSpec::Transpose(_) => {
                let logits = head.forward(g, &self.store, h)?;
                g.cross_entropy(logits, targets)
            }
        }
    }
}

/// FLOPs of W1's convolutions per step: 2·B·L·Σ(C_in·K·C_out) forward, twice that backward.
fn w1_flop_per_step() -> f64 {
    let (b, l) = (16.0, 256.0);
    let macs = 256.0 * 3.0 * 128.0 + 5.0 * 128.0 * 3.0 * 128.0 + 128.0 * 3.0 * 5000.0;
    3.0 * 2.0 * b * l * macs
}

/// Runs one workload and reports its step times and losses.
pub fn run_workload(opts: &BenchOptions) -> Result<BenchReport> {
    if opts.steps == 0 {
        return Err(Error::config("steps", "must be at least 1"));
    }
    let threads = threads::init_threads((opts.threads > 0).then_some(opts.threads));
    let (v, batch, len, expected) = opts.workload.dims();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut model = BenchModel::new(opts.workload, &mut rng);
    let n_params = model.store.numel();
    if n_params != expected {
        return Err(Error::config("workload", format!("model has {n_params} parameters, expected {expected}")));
    }
    let mut data_rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(1));
    let tokens: Vec<u32> = (0..batch * len).map(|_| data_rng.gen_range(0..v as u32)).collect();
    let targets: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let lr = 1e-3;
    let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr, weight_decay: 0.0, ..OptimizerConfig::default() };
    let mut opt = Optimizer::new(&cfg, &model.store)?;

    // The steps run on a pool worker, as in training (see `threads::on_pool`).
    let (times, losses, first_step_ms) = threads::on_pool(|| time_steps(opts, &mut model, &mut opt, &tokens, &targets))?;
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
    let (gflop_per_step, gflops) = match opts.workload {
        Workload::W1 => {
            let gf = w1_flop_per_step() / 1e9;
            (Some(round_to(gf, 3)), Some(round_to(gf / (median / 1e3), 2)))
        }
        _ => (None, None),
    };
    Ok(BenchReport {
        workload: opts.workload.name().to_string(),
        framework: "convlm".to_string(),
        ms_per_step_median: round_to(median, 4),
        ms_per_step_min: round_to(sorted[0], 4),
        loss_first: losses[0],
        loss_last: losses[n - 1],
        params: n_params,
        peak_rss_mb: peak_rss_mb().map(|m| round_to(m, 1)),
        first_step_ms: round_to(first_step_ms, 2),
        threads,
        steps: opts.steps,
        warmup: opts.warmup,
        gflop_per_step,
        gflops,
    })
}

/// Runs the warm-up and counted steps; returns (counted step times in ms, their losses, the
/// first step's time).
fn time_steps(opts: &BenchOptions, model: &mut BenchModel, opt: &mut Optimizer, tokens: &[u32], targets: &[i64]) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let (_, batch, len, _) = opts.workload.dims();
    let lr = opt.config().lr;
    let mut times = Vec::with_capacity(opts.steps);
    let mut losses = Vec::with_capacity(opts.steps);
    let mut first_step_ms = 0.0;
    let verbose = std::env::var_os("CONVLM_BENCH_VERBOSE").is_some();
    for i in 0..opts.warmup + opts.steps {
        let t0 = Instant::now();
        let step = || -> Result<f64> {
            model.store.zero_grad();
            let mut g = Graph::new(true);
            let loss = model.loss(&mut g, tokens, targets, batch, len)?;
            g.backward(loss)?;
            model.store.accumulate_grads(&g);
            opt.step(&mut model.store, lr);
            Ok(g.value(loss).data()[0] as f64)
        };
        // As in training: the other workers stay awake between the step's ops.
        let lv = threads::with_workers_awake(step)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            first_step_ms = ms;
        }
        if verbose {
            eprintln!("{} {i:4} loss {lv:.5} {ms:9.2} ms", if i < opts.warmup { "warm" } else { "step" });
        }
        if i >= opts.warmup {
            times.push(ms);
            losses.push(lv);
        }
    }
    Ok((times, losses, first_step_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_pytorch() {
        for w in [Workload::W1, Workload::W2, Workload::W3] {
            let model = BenchModel::new(w, &mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!(model.store().numel(), w.dims().3, "{w:?}");
        }
    }

    #[test]
    fn input_ids_shift_right() {
        let model = BenchModel::new(Workload::W2, &mut ChaCha8Rng::seed_from_u64(0));
        let (ids, len) = model.input_ids(&[5, 6, 7, 8, 9, 10], 2, 3);
        assert_eq!((ids, len), (vec![0, 5, 6, 0, 8, 9], 3));
        let model = BenchModel::new(Workload::W3, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(model.input_ids(&[1, 2, 3], 1, 3), (vec![1, 2, 3], 3));
    }

    #[test]
    fn small_runs_start_near_uniform_loss_and_serialize() {
        for w in [Workload::W2, Workload::W3] {
            let r = run_workload(&BenchOptions { workload: w, steps: 3, warmup: 1, threads: 2, seed: 0 }).unwrap();
            let ln_v = (w.dims().0 as f64).ln();
            assert!((r.loss_first - ln_v).abs() / ln_v < 0.05, "{w:?}: {} vs ln V {ln_v}", r.loss_first);
            let line = r.to_json_line();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            for key in ["workload", "framework", "ms_per_step_median", "ms_per_step_min", "loss_first", "loss_last", "params", "peak_rss_mb"] {
                assert!(v.get(key).is_some(), "{key} missing in {line}");
            }
            assert_eq!(v["params"], w.dims().3);
        }
    }
}
