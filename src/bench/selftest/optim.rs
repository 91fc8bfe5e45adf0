//! The optimizers on the GPU against the CPU optimizer: three updates of a small parameter
//! set (weights that decay and vectors that do not) with SGD, SGD with momentum, Adam and
//! AdamW, with and without gradient clipping, and with a moving average of the weights; the
//! gradient norm each step.

use super::harness::{error, seed_of, uniform};
use super::Check;
use crate::error::Result;
use crate::nn::device::DeviceParams;
use crate::nn::{Buffers, ParamStore};
use crate::optim::device::{DeviceOptimizer, StepStatus};
use crate::optim::{clip_grad_norm, grad_norm, Optimizer, OptimizerConfig, OptimizerKind};
use crate::tensor::gpu::{GpuDevice, GpuTensor};

/// Updates differ from the CPU's by the rounding of unfused multiply-adds (WGSL's `fma` may
/// be computed either way) over three steps; 1e-5 of a tensor's scale bounds it.
const TOL: f64 = 1e-5;

fn store(case: &str) -> ParamStore {
    let mut s = ParamStore::new();
    for (i, (name, shape)) in
        [("convs.0.weight", vec![6usize, 4, 3]), ("convs.0.bias", vec![6]), ("embedding.weight", vec![9, 5]), ("head.weight", vec![40_000])]
            .into_iter()
            .enumerate()
    {
        s.add(name, uniform(&shape, 1.0, seed_of(case) ^ i as u64));
    }
    s
}

pub(super) fn run(d: &GpuDevice, out: &mut Vec<Check>) -> Result<()> {
    let configs = [
        ("sgd", OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.0, weight_decay: 0.01, ..OptimizerConfig::default() }),
        ("sgd momentum", OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.01, ..OptimizerConfig::default() }),
        ("adam", OptimizerConfig { kind: OptimizerKind::Adam, lr: 1e-2, weight_decay: 0.01, ..OptimizerConfig::default() }),
        ("adamw", OptimizerConfig { kind: OptimizerKind::AdamW, lr: 1e-2, weight_decay: 0.1, ..OptimizerConfig::default() }),
        ("adamw ema", OptimizerConfig { kind: OptimizerKind::AdamW, lr: 1e-2, weight_decay: 0.1, ema_decay: 0.9, ..OptimizerConfig::default() }),
        ("sgd ema", OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, ema_decay: 0.9, ..OptimizerConfig::default() }),
    ];
    for (name, cfg) in configs {
        for clip in [None, Some(0.5f32)] {
            let case = format!("{name}{}", if clip.is_some() { " clip 0.5" } else { "" });
            compare_updates(d, &case, &cfg, clip, out)?;
        }
    }
    Ok(())
}

fn compare_updates(d: &GpuDevice, case: &str, cfg: &OptimizerConfig, clip: Option<f32>, out: &mut Vec<Check>) -> Result<()> {
    let mut host = store(case);
    let mut opt = Optimizer::new(cfg, &host)?;
    let mut params = DeviceParams::upload(d, &host, &Buffers::default())?;
    let mut dev_opt = DeviceOptimizer::upload(&opt, &host, &params)?;
    let status = StepStatus::new(&params)?;
    let loss = GpuTensor::from_slice(d, &[], &[1.0])?;
    let (mut norm_err, mut worst) = (0.0f64, 0.0f64);
    for step in 0..3u64 {
        // The same gradients on both sides.
        for (i, p) in host.params_mut().iter_mut().enumerate() {
            p.grad = uniform(p.value.shape(), 2.0, seed_of(case) ^ (100 + step * 10 + i as u64));
        }
        for (i, p) in host.params().iter().enumerate() {
            params.grad(crate::nn::ParamId(i)).write(p.grad.data())?;
        }
        let lr = cfg.lr * (1.0 - 0.2 * step as f32);
        let norm = match clip {
            Some(max) => clip_grad_norm(&mut host, max) as f64,
            None => grad_norm(&host),
        };
        opt.step(&mut host, lr);
        status.begin(&loss)?;
        status.grad_norm(&params, clip)?;
        dev_opt.step(&params, lr, &status)?;
        let report = status.read()?;
        norm_err = norm_err.max(((report.grad_norm as f64) - norm).abs() / norm);
    }
    for (i, p) in host.params().iter().enumerate() {
        worst = worst.max(error(&params.value(crate::nn::ParamId(i)).to_vec()?, p.value.data()));
    }
    let mut state_err = 0.0f64;
    let mut back = Optimizer::new(cfg, &host)?;
    dev_opt.download(&mut back)?;
    for ((_, a), (_, b)) in back.state_tensors().iter().zip(opt.state_tensors().iter()) {
        state_err = state_err.max(error(a.data(), b.data()));
    }
    if cfg.averages() {
        // Swapped in on the device, the averages are the parameters the host averaged.
        let averaged = opt.averaged(&host);
        dev_opt.swap_averages(&mut params);
        let mut swap_err = 0.0f64;
        for (i, p) in averaged.params().iter().enumerate() {
            swap_err = swap_err.max(error(&params.value(crate::nn::ParamId(i)).to_vec()?, p.value.data()));
        }
        out.push(Check { case: format!("{case}: averaged weights swapped in"), pass: "update", error: swap_err, tolerance: TOL });
    }
    out.push(Check { case: format!("{case}: grad norm"), pass: "reduce", error: norm_err, tolerance: TOL });
    out.push(Check { case: format!("{case}: parameters after 3 steps"), pass: "update", error: worst, tolerance: TOL });
    out.push(Check { case: format!("{case}: optimizer state"), pass: "update", error: state_err, tolerance: TOL });
    Ok(())
}
