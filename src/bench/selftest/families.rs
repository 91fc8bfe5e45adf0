//! One training step of every registered family on the GPU against the CPU engine: the
//! fused loss, every parameter's gradient, BatchNorm's running statistics and the
//! parameters after an AdamW update — the family's own forward, run by both backends.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::harness::error;
use super::Check;
use crate::error::Result;
use crate::models::{Model, ModelConfig, REGISTRY};
use crate::nn::device::DeviceParams;
use crate::optim::device::{DeviceOptimizer, StepStatus};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::tensor::gpu::{GpuDevice, GpuGraph};
use crate::tensor::Graph;

/// Sums over a whole model accumulate more rounding than one op: 1e-4 of each tensor's scale
/// still catches any wrong index or rule (those give errors of order 1).
const TOL: f64 = 1e-4;

/// The tiny configurations of ../shared/golden/models (a family missing here uses its
/// defaults).
fn tiny(family: &str) -> Option<&'static str> {
    Some(match family {
        "mlp" => r#"{"family":"mlp","block_size":3,"n_embd":5,"n_hidden":16,"activation":"tanh"}"#,
        "causal-cnn" => r#"{"family":"causal-cnn","n_embd":6,"channels":8,"kernel_size":3,"n_layers":3,"activation":"relu"}"#,
        "dilated" => r#"{"family":"dilated","n_embd":6,"channels":8,"kernel_size":2,"dilations":[1,2,4],"activation":"tanh"}"#,
        "hierarchical" => r#"{"family":"hierarchical","block_size":8,"n_embd":6,"n_hidden":12,"batchnorm":true}"#,
        "wavenet" => r#"{"family":"wavenet","residual_channels":8,"dilation_channels":6,"skip_channels":10,"kernel_size":2,"n_layers":3,"n_stacks":2}"#,
        "gated-cnn" => r#"{"family":"gated-cnn","n_embd":6,"channels":8,"kernel_size":3,"n_blocks":2,"layers_per_block":2}"#,
        "pixelcnn" => r#"{"family":"pixelcnn","n_embd":4,"channels":6,"kernel_size":3,"n_layers":3}"#,
        "hyena" => r#"{"family":"hyena","d_model":8,"n_layers":2,"max_len":16,"mlp_ratio":2,"filter_emb_dim":5,"filter_width":6,"filter_inner":1}"#,
        _ => return None,
    })
}

pub(super) fn run(d: &GpuDevice, out: &mut Vec<Check>) -> Result<()> {
    for info in REGISTRY {
        let config = match tiny(info.name) {
            Some(json) => ModelConfig::from_json(json, std::path::Path::new("<selftest>"))?,
            None => ModelConfig::default_for(info.name)?,
        };
        one_step(d, info.name, &config, out)?;
    }
    Ok(())
}

fn one_step(d: &GpuDevice, family: &str, config: &ModelConfig, out: &mut Vec<Check>) -> Result<()> {
    let vocab = 11;
    let shape: Vec<usize> = if config.is_grid() { vec![3, 5, 6] } else { vec![3, 12] };
    let n: usize = shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(super::harness::seed_of(family));
    let ids: Vec<u32> = (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect();
    let targets: Vec<i64> = (0..n).map(|i| if i % 9 == 4 { -1 } else { rng.gen_range(0..vocab as i64) }).collect();
    let mut cpu = Model::new(config, vocab, 0)?;
    let params = DeviceParams::upload(d, cpu.params(), cpu.buffers())?;

    let mut g = Graph::new(true);
    let loss = cpu.loss(&mut g, &ids, &shape, &targets, 0)?;
    let want_loss = g.value(loss).data()[0];
    g.backward(loss)?;
    cpu.params_mut().accumulate_grads(&g);
    drop(g);
    let mut gg = GpuGraph::new(d, true);
    let gl = cpu.loss_on_device(&mut gg, &params, &ids, &shape, &targets, 0)?;
    let got_loss = gg.value(gl).to_vec()?[0];
    gg.backward(gl)?;
    drop(gg);
    out.push(Check { case: format!("{family}: fused loss"), pass: "forward", error: error(&[got_loss], &[want_loss]), tolerance: TOL });
    let mut on_gpu = cpu.clone();
    params.download_grads(on_gpu.params_mut())?;
    let grads = cpu.params().params().iter().zip(on_gpu.params().params()).map(|(a, b)| error(b.grad.data(), a.grad.data())).fold(0.0, f64::max);
    out.push(Check { case: format!("{family}: every gradient"), pass: "backward", error: grads, tolerance: TOL });

    let cfg = OptimizerConfig { kind: OptimizerKind::AdamW, lr: 1e-2, weight_decay: 0.1, ..OptimizerConfig::default() };
    let mut opt = Optimizer::new(&cfg, cpu.params())?;
    let mut dev_opt = DeviceOptimizer::upload(&opt, cpu.params(), &params)?;
    opt.step(cpu.params_mut(), cfg.lr);
    let status = StepStatus::new(&params)?;
    status.begin(&crate::tensor::gpu::GpuTensor::from_slice(d, &[], &[got_loss])?)?;
    status.grad_norm(&params, None)?;
    dev_opt.step(&params, cfg.lr, &status)?;
    let (store, buffers) = on_gpu.state_mut();
    params.download(store, buffers)?;
    let updated = cpu.params().params().iter().zip(on_gpu.params().params()).map(|(a, b)| error(b.value.data(), a.value.data())).fold(0.0, f64::max);
    out.push(Check { case: format!("{family}: AdamW step"), pass: "update", error: updated, tolerance: TOL });
    if !cpu.buffers().entries.is_empty() {
        let running = cpu.buffers().named().iter().zip(on_gpu.buffers().named()).map(|((_, a), (_, b))| error(b.data(), a.data())).fold(0.0, f64::max);
        out.push(Check { case: format!("{family}: BatchNorm running statistics"), pass: "update", error: running, tolerance: TOL });
    }
    Ok(())
}
