//! Training-step benchmarks of `../shared/bench/WORKLOADS.md`, printed as the same one-line
//! JSON as `bench_pytorch.py` (plus extras). W1 and W2 (and W4) run the product: a model from
//! the registry stepped by [`train_step`](crate::run::step::train_step) on batches drawn
//! like training's ([`product`]); W3, whose layers no family uses, is an engine-level model
//! ([`engine_w3`]).

pub mod engine_w3;
pub mod product;
#[cfg(feature = "gpu")]
pub mod selftest;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::tensor::memory::{self, MemoryReport, PoolReport};
use crate::tensor::{peak, threads, Device, Precision};
use engine_w3::{W3Model, W3_DIMS};
use product::{ProductRun, ProductSpec};

/// Which benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// "reviews-cnn": the `causal-cnn` family, V=5000, E=256, C=128, K=3, 6 layers, B=16, L=256.
    W1,
    /// "names-dilated": the `dilated` family, V=28, E=24, C=128, K=2, dilations 1,2,4,8, B=32, L=24.
    W2,
    /// "strided+grouped" (engine-level): strided/grouped/dilated conv + conv_transpose, B=16, L=128.
    W3,
    /// "hyena-long": the `hyena` family, V=256, d_model 128, 4 layers, max_len 1024, B=4, L=1024.
    W4,
}

impl Workload {
    /// `"w1"`, `"w2"`, `"w3"` or `"w4"`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
        }
    }

    /// The registry model of a product workload; `None` for the engine-level W3.
    pub fn product_spec(self) -> Result<Option<ProductSpec>> {
        match self {
            Workload::W1 => ProductSpec::w1().map(Some),
            Workload::W2 => ProductSpec::w2().map(Some),
            Workload::W3 => Ok(None),
            Workload::W4 => ProductSpec::w4().map(Some),
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
            "w4" => Ok(Workload::W4),
            _ => Err(Error::config("workload", format!("must be w1, w2, w3 or w4, got `{s}`"))),
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
    /// Seed of the parameters and of the tokens.
    pub seed: u64,
    /// What the steps' matmuls and convolutions compute in.
    pub precision: Precision,
    /// Where the steps run (W1, W2 and W4 on a GPU as `convlm train --device gpu`).
    pub device: Device,
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
    /// `product` (a registry model stepped by `train_step`) or `engine` (W3).
    pub path: &'static str,
    /// The model family of a product workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    /// FLOPs of one step's convolutions (forward + both backward GEMMs), W1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflop_per_step: Option<f64>,
    /// `gflop_per_step` / median step time, W1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// `fp32` or `bf16` (`framework` says `convlm+bf16` for the latter, as
    /// `bench_pytorch.py --bf16` says `pytorch+bf16`).
    pub precision: Precision,
    /// The CPU the steps ran on (`/proc/cpuinfo`'s model name, family and model).
    pub cpu: String,
    /// Its measured peak on the same threads (`tensor::peak`), GFLOP/s: fp32 FMAs, and bf16
    /// dot products where the CPU has them.
    pub peak_fp32_gflops: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bf16_gflops: Option<f64>,
    /// `gflops` over the peak of the step's precision, W1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<f64>,
    /// The kernel choices the steps ran with (`tensor::tune`; `convlm bench` installs the
    /// ones measured on this CPU, as `convlm train` does).
    pub tuning: crate::tensor::tune::Tuning,
    /// The GPU adapter (name, backend, kind) when the steps ran on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Per counted step on a GPU: bytes sent to the device (token ids and index arrays), read
    /// back (the step's status words), of kernel parameters (sizes, step scalars), and
    /// kernels launched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param_bytes_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels_per_step: Option<f64>,
    /// The memory layer after the last step: the budget, bytes kept (now and at peak), the
    /// pool's hits and misses per use and the allocator's blocks (`tensor::memory`).
    pub memory: MemoryReport,
    /// On a GPU: its buffer pool after the last step (the same report as the CPU's pool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_memory: Option<PoolReport>,
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

/// FLOPs of W1's convolutions per step: 2·B·L·Σ(C_in·K·C_out) forward, twice that backward.
fn w1_flop_per_step() -> f64 {
    let (b, l) = (16.0, 256.0);
    let macs = 256.0 * 3.0 * 128.0 + 5.0 * 128.0 * 3.0 * 128.0 + 128.0 * 3.0 * 5000.0;
    3.0 * 2.0 * b * l * macs
}

/// A workload ready to step.
enum Runner {
    Product(Box<ProductRun>),
    /// W3 on its fixed batch of tokens (also the targets).
    Engine {
        model: Box<W3Model>,
        optimizer: Optimizer,
        tokens: Vec<u32>,
        targets: Vec<i64>,
        precision: Precision,
        /// W3 on a GPU.
        #[cfg(feature = "gpu")]
        device: Option<Box<engine_w3::W3Device>>,
    },
}

impl Runner {
    fn new(workload: Workload, seed: u64, precision: Precision, device: Device) -> Result<(Self, usize, Option<&'static str>)> {
        if !device.is_cpu() && precision != Precision::Fp32 {
            return Err(Error::device(format!("{device}: --precision {precision} runs on the CPU only; a GPU computes in fp32")));
        }
        if let Some(spec) = workload.product_spec()? {
            let run = ProductRun::new(&spec, seed, precision, device)?;
            let (params, family) = (run.model.params().numel(), spec.config.family());
            return Ok((Runner::Product(Box::new(run)), params, Some(family)));
        }
        let model = W3Model::new(&mut ChaCha8Rng::seed_from_u64(seed));
        let (v, _, batch, len) = W3_DIMS;
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1));
        let tokens: Vec<u32> = (0..batch * len).map(|_| rng.gen_range(0..v as u32)).collect();
        let targets = tokens.iter().map(|&t| i64::from(t)).collect();
        let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr: 1e-3, weight_decay: 0.0, ..OptimizerConfig::default() };
        let optimizer = Optimizer::new(&cfg, model.store())?;
        let params = model.store().numel();
        precision.check_cpu()?;
        #[cfg(feature = "gpu")]
        let device = match device {
            Device::Cpu => None,
            d => Some(Box::new(engine_w3::W3Device::new(&crate::tensor::gpu::GpuDevice::open(d)?, &model, &optimizer)?)),
        };
        #[cfg(not(feature = "gpu"))]
        if !device.is_cpu() {
            return Err(Error::device(format!("{device}: this build has no GPU support (built without the `gpu` feature)")));
        }
        let runner = Runner::Engine {
            model: Box::new(model),
            optimizer,
            tokens,
            targets,
            precision,
            #[cfg(feature = "gpu")]
            device,
        };
        Ok((runner, params, None))
    }

    /// The GPU the steps run on.
    #[cfg(feature = "gpu")]
    fn gpu(&self) -> Option<&crate::tensor::gpu::GpuDevice> {
        match self {
            Runner::Product(run) => run.device.as_ref().map(|d| d.device()),
            Runner::Engine { device, .. } => device.as_ref().map(|d| d.device()),
        }
    }

    /// The GPU adapter the steps run on.
    fn device_name(&self) -> Option<String> {
        #[cfg(feature = "gpu")]
        return self.gpu().map(|d| d.info().describe());
        #[cfg(not(feature = "gpu"))]
        None
    }

    /// Bytes up, bytes down, parameter bytes and kernels so far on the GPU the steps run on.
    fn traffic(&self) -> Option<(u64, u64, u64, u64)> {
        #[cfg(feature = "gpu")]
        return self.gpu().map(|d| {
            let t = d.traffic();
            (t.up, t.down, t.params, t.dispatches)
        });
        #[cfg(not(feature = "gpu"))]
        None
    }

    /// The buffer pool of the GPU the steps run on.
    fn device_memory(&self) -> Option<PoolReport> {
        #[cfg(feature = "gpu")]
        return self.gpu().map(crate::tensor::memory::BufferPool::report);
        #[cfg(not(feature = "gpu"))]
        None
    }

    /// One step; its loss before the update.
    fn step(&mut self) -> Result<f64> {
        match self {
            Runner::Product(run) => run.step(),
            #[cfg(feature = "gpu")]
            Runner::Engine { model, device: Some(device), tokens, targets, .. } => model.step_on_device(device, tokens, targets),
            Runner::Engine { model, optimizer, tokens, targets, precision, .. } => model.step(optimizer, tokens, targets, *precision),
        }
    }
}

/// Most steps (timed or warm-up) a benchmark takes: a million of the smallest workload's
/// are half an hour; more is a mistake, and their timings would not fit in memory anyway.
pub const MAX_STEPS: usize = 1_000_000;

/// Runs one workload and reports its step times and losses.
pub fn run_workload(opts: &BenchOptions) -> Result<BenchReport> {
    // `auto` is timed (and reported) as what it chooses on this machine.
    let resolved = BenchOptions { precision: opts.precision.resolve(opts.device.is_cpu()), ..opts.clone() };
    let opts = &resolved;
    if opts.steps == 0 {
        return Err(Error::config("steps", "must be at least 1"));
    }
    for (flag, n) in [("steps", opts.steps), ("warmup", opts.warmup)] {
        if n > MAX_STEPS {
            return Err(Error::config(flag, format!("{n} is more than the {MAX_STEPS} steps a benchmark takes")));
        }
    }
    let threads = threads::init_threads((opts.threads > 0).then_some(opts.threads));
    let (mut runner, params, family) = Runner::new(opts.workload, opts.seed, opts.precision, opts.device)?;
    // The steps run on a pool worker, as in training (see `threads::on_pool`); the peak is
    // measured on the same pool first.
    let peak = peak::measure(3);
    let (times, losses, first_step_ms, traffic) = threads::on_pool(|| time_steps(opts, &mut runner))?;
    if crate::tensor::profile::enabled() {
        eprint!("per-op profile of {} steps (CONVLM_PROFILE=1):\n{}", opts.warmup + opts.steps, crate::tensor::profile::take_report());
    }
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
    let peak_of_precision = match opts.precision {
        Precision::Fp32 | Precision::Auto => Some(peak.fp32_gflops),
        Precision::Bf16 => peak.bf16_gflops,
    };
    let efficiency = gflops.zip(peak_of_precision).map(|(g, p)| round_to(g / p, 3));
    Ok(BenchReport {
        workload: opts.workload.name().to_string(),
        framework: match opts.precision {
            Precision::Fp32 | Precision::Auto => "convlm".to_string(),
            Precision::Bf16 => "convlm+bf16".to_string(),
        },
        ms_per_step_median: round_to(median, 4),
        ms_per_step_min: round_to(sorted[0], 4),
        loss_first: losses[0],
        loss_last: losses[n - 1],
        params,
        peak_rss_mb: peak_rss_mb().map(|m| round_to(m, 1)),
        first_step_ms: round_to(first_step_ms, 2),
        threads,
        steps: opts.steps,
        warmup: opts.warmup,
        path: if family.is_some() { "product" } else { "engine" },
        family,
        gflop_per_step,
        gflops,
        precision: opts.precision,
        cpu: peak.cpu,
        peak_fp32_gflops: peak.fp32_gflops,
        peak_bf16_gflops: peak.bf16_gflops,
        efficiency,
        tuning: crate::tensor::tune::active(),
        device: runner.device_name(),
        bytes_up_per_step: traffic.map(|t| round_to(t.up as f64 / opts.steps as f64, 1)),
        bytes_down_per_step: traffic.map(|t| round_to(t.down as f64 / opts.steps as f64, 1)),
        param_bytes_per_step: traffic.map(|t| round_to(t.params as f64 / opts.steps as f64, 1)),
        kernels_per_step: traffic.map(|t| round_to(t.dispatches as f64 / opts.steps as f64, 1)),
        memory: memory::report(),
        device_memory: runner.device_memory(),
    })
}

/// What crossed the bus during the counted steps (a GPU run), in all.
#[derive(Clone, Copy, Debug)]
struct Moved {
    up: u64,
    down: u64,
    params: u64,
    dispatches: u64,
}

/// What the warm-up and counted steps measured: the counted step times in ms, their losses,
/// the first step's time, the traffic of the counted steps on a GPU.
type Timed = (Vec<f64>, Vec<f64>, f64, Option<Moved>);

/// Runs the warm-up and counted steps.
fn time_steps(opts: &BenchOptions, runner: &mut Runner) -> Result<Timed> {
    let mut times = Vec::with_capacity(opts.steps);
    let mut losses = Vec::with_capacity(opts.steps);
    let mut first_step_ms = 0.0;
    let verbose = std::env::var_os("CONVLM_BENCH_VERBOSE").is_some();
    let mut before = None;
    for i in 0..opts.warmup + opts.steps {
        if i == opts.warmup {
            before = runner.traffic();
        }
        let t0 = Instant::now();
        let loss = runner.step()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            first_step_ms = ms;
        }
        if verbose {
            eprintln!("{} {i:4} loss {loss:.5} {ms:9.2} ms", if i < opts.warmup { "warm" } else { "step" });
        }
        if i >= opts.warmup {
            times.push(ms);
            losses.push(loss);
        }
    }
    let moved = match (before, runner.traffic()) {
        (Some(b), Some(a)) => Some(Moved { up: a.0 - b.0, down: a.1 - b.1, params: a.2 - b.2, dispatches: a.3 - b.3 }),
        _ => None,
    };
    Ok((times, losses, first_step_ms, moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_have_pytorchs_parameter_counts() {
        for (w, expected) in [(Workload::W1, 3_549_832), (Workload::W2, 109_244), (Workload::W3, 72_064), (Workload::W4, 933_120)] {
            let (_, params, family) = Runner::new(w, 0, Precision::Fp32, Device::Cpu).unwrap();
            assert_eq!(params, expected, "{w:?}");
            assert_eq!(family.is_some(), w != Workload::W3, "{w:?}: W1, W2 and W4 come from the registry");
        }
    }

    #[test]
    fn the_random_stream_has_the_vocabulary_and_windows_of_the_workload() {
        let ds = product::random_stream(28, 24, 3).unwrap();
        assert_eq!(ds.tokenizer().vocab_size(), 28);
        let batch = ds.sample_batch(crate::data::Split::Train, 32, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!((batch.batch_size, batch.seq_len), (32, 24));
        assert!(batch.inputs.iter().all(|&t| t < 28));
        assert!(product::random_stream(4, 24, 3).is_err());
    }

    #[test]
    fn small_runs_start_near_uniform_loss_and_serialize() {
        for (w, v) in [(Workload::W2, 28f64), (Workload::W3, 64f64)] {
            let r =
                run_workload(&BenchOptions { workload: w, steps: 3, warmup: 1, threads: 2, seed: 0, precision: Precision::Fp32, device: Device::Cpu }).unwrap();
            let ln_v = v.ln();
            assert!((r.loss_first - ln_v).abs() / ln_v < 0.05, "{w:?}: {} vs ln V {ln_v}", r.loss_first);
            let line = r.to_json_line();
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            for key in [
                "workload",
                "framework",
                "ms_per_step_median",
                "ms_per_step_min",
                "loss_first",
                "loss_last",
                "params",
                "peak_rss_mb",
                "path",
                "cpu",
                "peak_fp32_gflops",
            ] {
                assert!(json.get(key).is_some(), "{key} missing in {line}");
            }
            let memory = &json["memory"];
            let hits = memory["pool"]["tape"]["hits"].as_u64().unwrap_or(0);
            assert!(hits > 0, "{w:?}: the steps after the first take tape buffers from the pool: {line}");
            assert!(memory["budget_bytes"].as_u64().is_some_and(|b| b > 0) && memory["blocks"]["hits"].is_u64(), "{line}");
        }
        let r =
            run_workload(&BenchOptions { workload: Workload::W2, steps: 1, warmup: 0, threads: 2, seed: 0, precision: Precision::Fp32, device: Device::Cpu })
                .unwrap();
        assert_eq!((r.path, r.family), ("product", Some("dilated")));
    }
}
