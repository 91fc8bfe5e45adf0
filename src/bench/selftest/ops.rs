//! Every op of the GPU tape against the CPU tape.

use super::harness::{both, compare, error, seed_of, uniform, TOL};
use super::Check;
use crate::error::Result;
use crate::tensor::gpu::{GpuDevice, GpuTensor};
use crate::tensor::{Activation, Conv1dSpec, ConvTranspose1dSpec, MaskType, MaskedConv2dSpec, Padding, Tensor};

/// Random inputs of `shapes` for `case`.
fn inputs(case: &str, shapes: &[&[usize]]) -> Vec<Tensor> {
    shapes.iter().enumerate().map(|(i, s)| uniform(s, 1.0, seed_of(case) ^ (i as u64 + 7))).collect()
}

fn conv_spec(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> Conv1dSpec {
    Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride, padding, dilation, groups }
}

pub(super) fn run(d: &GpuDevice, out: &mut Vec<Check>) -> Result<()> {
    // Linear layers: with and without bias, rows not a multiple of the GEMM tile; both GEMM
    // kernels (the tiled one GPUs run, the direct one software adapters run), the backward
    // products reading transposed operands.
    for (variant, direct) in [("tiled", false), ("direct", true)] {
        crate::tensor::gpu::with_gemm_variant(direct, || -> Result<()> {
            let (c, gpu) = both!(|g, v| g.linear(v[0], v[1], Some(v[2])));
            compare(d, &format!("linear (2,37,19)->11 {variant} gemm"), &inputs("linear", &[&[2, 37, 19], &[11, 19], &[11]]), c, gpu, TOL, out)?;
            let (c, gpu) = both!(|g, v| g.linear(v[0], v[1], None));
            compare(d, &format!("linear (70,65)->66 no bias {variant} gemm"), &inputs("linear nb", &[&[70, 65], &[66, 65]]), c, gpu, TOL, out)?;
            let spec = conv_spec(8, 6, 3, 2, Padding::Symmetric(1), 1, 2);
            let (c, gpu) = both!(|g, v| g.conv1d(v[0], v[1], Some(v[2]), &spec));
            compare(d, &format!("conv1d grouped {variant} gemm"), &inputs("conv grouped", &[&[3, 16, 8], &[6, 4, 3], &[6]]), c, gpu, TOL, out)
        })?;
    }

    // Embedding: repeated ids, some ids unused.
    let ids: Vec<u32> = (0..24).map(|i| (i * 7 % 11) as u32).collect();
    let (c, gpu) = both!(|g, v| g.embedding(v[0], &ids, &[4, 6]));
    compare(d, "embedding (4,6) of 13x5", &inputs("embedding", &[&[13, 5]]), c, gpu, TOL, out)?;

    // Conv1d: causal dilated, strided grouped symmetric, depthwise (×1 and ×2), kernel 1,
    // asymmetric padding with stride and dilation.
    for (name, spec, x) in [
        ("conv1d causal k3 d2 6->10", conv_spec(6, 10, 3, 1, Padding::causal(3, 2), 2, 1), [2usize, 13, 6]),
        ("conv1d k3 s2 p1 g2 8->6", conv_spec(8, 6, 3, 2, Padding::Symmetric(1), 1, 2), [3, 16, 8]),
        ("conv1d depthwise k3 12", conv_spec(12, 12, 3, 1, Padding::causal(3, 1), 1, 12), [2, 9, 12]),
        ("conv1d depthwise x2 k2 s2 4->8", conv_spec(4, 8, 2, 2, Padding::Symmetric(1), 1, 4), [2, 11, 4]),
        ("conv1d k1 7->9", conv_spec(7, 9, 1, 1, Padding::Symmetric(0), 1, 1), [2, 10, 7]),
        ("conv1d k4 s3 d2 pad(5,1) 5->7", conv_spec(5, 7, 4, 3, Padding::Asymmetric { left: 5, right: 1 }, 2, 1), [2, 17, 5]),
    ] {
        let w = spec.weight_shape();
        let (c, gpu) = both!(|g, v| g.conv1d(v[0], v[1], Some(v[2]), &spec));
        compare(d, name, &inputs(name, &[&x, &w, &[spec.out_channels]]), c, gpu, TOL, out)?;
    }

    // Transposed conv (W3's upsampling and a grouped, dilated one).
    for (name, spec, x) in [
        (
            "conv_transpose1d k4 s2 p1 8->6",
            ConvTranspose1dSpec { in_channels: 8, out_channels: 6, kernel_size: 4, stride: 2, padding: 1, output_padding: 0, dilation: 1, groups: 1 },
            [2usize, 7, 8],
        ),
        (
            "conv_transpose1d k3 s3 d2 op1 g2 4->6",
            ConvTranspose1dSpec { in_channels: 4, out_channels: 6, kernel_size: 3, stride: 3, padding: 2, output_padding: 1, dilation: 2, groups: 2 },
            [2, 5, 4],
        ),
    ] {
        let w = spec.weight_shape();
        let (c, gpu) = both!(|g, v| g.conv_transpose1d(v[0], v[1], Some(v[2]), &spec));
        compare(d, name, &inputs(name, &[&x, &w, &[spec.out_channels]]), c, gpu, TOL, out)?;
    }

    // Masked conv2d, masks A and B.
    for (name, mask, k) in [("masked_conv2d A 3x3 3->5", MaskType::A, 3usize), ("masked_conv2d B 5x5 3->5", MaskType::B, 5)] {
        let spec = MaskedConv2dSpec { in_channels: 3, out_channels: 5, kernel_h: k, kernel_w: k, mask };
        let w = spec.weight_shape();
        let (c, gpu) = both!(|g, v| g.masked_conv2d(v[0], v[1], Some(v[2]), &spec));
        compare(d, name, &inputs(name, &[&[2, 4, 6, 3], &w, &[5]]), c, gpu, TOL, out)?;
    }

    // The losses: plain, fused with a linear layer, fused with a conv (ignored targets among them).
    let targets: Vec<i64> = (0..30).map(|i| if i % 7 == 3 { -1 } else { (i * 5 % 17) as i64 }).collect();
    let (c, gpu) = both!(|g, v| g.cross_entropy(v[0], &targets));
    compare(d, "cross_entropy (30,17)", &inputs("ce", &[&[30, 17]]), c, gpu, TOL, out)?;
    let (c, gpu) = both!(|g, v| g.linear_cross_entropy(v[0], v[1], Some(v[2]), &targets));
    compare(d, "linear_cross_entropy (3,10,9)->17", &inputs("lce", &[&[3, 10, 9], &[17, 9], &[17]]), c, gpu, TOL, out)?;
    let spec = conv_spec(6, 17, 3, 1, Padding::causal(3, 1), 1, 1);
    let (c, gpu) = both!(|g, v| g.conv1d_cross_entropy(v[0], v[1], Some(v[2]), &spec, &targets));
    compare(d, "conv1d_cross_entropy (3,10,6) k3->17", &inputs("cce", &[&[3, 10, 6], &[17, 6, 3], &[17]]), c, gpu, TOL, out)?;

    // Normalisations.
    let (c, gpu) = both!(|g, v| g.layernorm(v[0], v[1], v[2], 1e-5));
    compare(d, "layernorm (3,5,24)", &inputs("ln", &[&[3, 5, 24], &[24], &[24]]), c, gpu, TOL, out)?;
    batchnorm_cases(d, out)?;

    // Activations and elementwise ops.
    for act in [Activation::Tanh, Activation::Relu, Activation::Gelu, Activation::Sigmoid] {
        let name = format!("{act:?} (5,41)").to_lowercase();
        let x = vec![uniform(&[5, 41], 4.0, seed_of(&name))];
        compare(d, &name, &x, &|g, v| Ok(g.activation(v[0], act)), &|g, v| g.activation(v[0], act), TOL, out)?;
    }
    compare(d, "sin (5,41)", &[uniform(&[5, 41], 4.0, 3)], &|g, v| Ok(g.sin(v[0])), &|g, v| g.sin(v[0]), TOL, out)?;
    let (c, gpu) = both!(|g, v| g.add(v[0], v[1]));
    compare(d, "add (7,9)", &inputs("add", &[&[7, 9], &[7, 9]]), c, gpu, TOL, out)?;
    let (c, gpu) = both!(|g, v| g.mul(v[0], v[1]));
    compare(d, "mul (7,9)", &inputs("mul", &[&[7, 9], &[7, 9]]), c, gpu, TOL, out)?;
    let (c, gpu) = both!(|g, v| {
        let y = g.mul(v[0], v[0])?;
        g.add(y, v[0])
    });
    compare(d, "x*x + x (gradients meeting)", &inputs("xx", &[&[6, 5]]), c, gpu, TOL, out)?;
    let (c, gpu) = both!(|g, v| g.scale_channels(v[0], v[1]));
    compare(d, "scale_channels (3,8,6)", &inputs("sc", &[&[3, 8, 6], &[6]]), c, gpu, TOL, out)?;
    let (c, gpu) = both!(|g, v| g.glu(v[0]));
    compare(d, "glu (4,6,10)", &inputs("glu", &[&[4, 6, 10]]), c, gpu, TOL, out)?;
    let (c, gpu) = (
        &|g: &mut crate::tensor::Graph, v: &[crate::tensor::Var]| {
            let a = g.slice(v[0], 2, 1, 4)?;
            let b = g.slice(v[0], 2, 3, 9)?;
            let b = g.slice(b, 2, 0, 3)?;
            g.mul(a, b)
        },
        &|g: &mut crate::tensor::gpu::GpuGraph, v: &[crate::tensor::Var]| {
            let a = g.slice_channels(v[0], 1, 4)?;
            let b = g.slice_channels(v[0], 3, 9)?;
            let b = g.slice_channels(b, 0, 3)?;
            g.mul(a, b)
        },
    );
    compare(d, "slice channels (3,4,9)", &inputs("slice", &[&[3, 4, 9]]), c, gpu, TOL, out)?;

    // Hyena's long convolution: below the CPU's FFT crossover (direct there too) and above it.
    for (name, len) in [("long_conv (2,40,6)", 40usize), ("long_conv (2,150,5) vs CPU FFT", 150)] {
        let ch = if len == 40 { 6 } else { 5 };
        let x = inputs(name, &[&[2, len, ch], &[len, ch], &[ch]]);
        let cpu = |g: &mut crate::tensor::Graph, v: &[crate::tensor::Var]| {
            let k = g.transpose_last2(v[1])?;
            g.long_conv(v[0], k, v[2])
        };
        compare(d, name, &x, &cpu, &|g, v| g.long_conv(v[0], v[1], v[2]), TOL, out)?;
    }
    dropout_case(d, out)
}

/// BatchNorm in training mode (batch statistics; the running averages compared too) and in
/// eval mode (running statistics).
fn batchnorm_cases(d: &GpuDevice, out: &mut Vec<Check>) -> Result<()> {
    let x = inputs("bn", &[&[4, 6, 5], &[5], &[5]]);
    let mean = uniform(&[5], 0.5, 11);
    let var = Tensor::new(vec![5], vec![0.5, 1.0, 1.5, 2.0, 0.7])?;
    let running = std::cell::RefCell::new(None);
    let cpu = |g: &mut crate::tensor::Graph, v: &[crate::tensor::Var]| {
        let (y, stats) = g.batchnorm(v[0], v[1], v[2], 1e-5, (mean.data(), var.data()))?;
        *running.borrow_mut() = stats;
        Ok(y)
    };
    let (gm, gv) = (GpuTensor::upload(d, &mean)?, GpuTensor::upload(d, &var)?);
    let gpu = |g: &mut crate::tensor::gpu::GpuGraph, v: &[crate::tensor::Var]| g.batchnorm(v[0], v[1], v[2], 1e-5, (&gm, &gv), 0.1);
    compare(d, "batchnorm train (4,6,5)", &x, &cpu, &gpu, TOL, out)?;
    // Running averages: (1 − m)·running + m·batch, as the CPU model folds them.
    if let Some(stats) = running.borrow().as_ref() {
        let want: Vec<f32> = mean.data().iter().zip(&stats.mean).map(|(r, b)| 0.9 * r + 0.1 * b).collect();
        out.push(Check { case: "batchnorm running_mean".into(), pass: "update", error: error(&gm.to_vec()?, &want), tolerance: TOL });
        let want: Vec<f32> = var.data().iter().zip(&stats.var_unbiased).map(|(r, b)| 0.9 * r + 0.1 * b).collect();
        out.push(Check { case: "batchnorm running_var".into(), pass: "update", error: error(&gv.to_vec()?, &want), tolerance: TOL });
    }
    eval_case(d, "batchnorm eval (4,6,5)", &x, &mean, &var, out)
}

/// Eval-mode batchnorm: forward on eval tapes (values), then the input gradient through an
/// eval tape's backward on both devices.
fn eval_case(d: &GpuDevice, case: &str, x: &[Tensor], mean: &Tensor, var: &Tensor, out: &mut Vec<Check>) -> Result<()> {
    let mut g = crate::tensor::Graph::new(false);
    let vars: Vec<_> = x.iter().map(|t| g.leaf(t.clone())).collect();
    let (y, _) = g.batchnorm(vars[0], vars[1], vars[2], 1e-5, (mean.data(), var.data()))?;
    let seed = uniform(g.shape(y), 1.0, 5);
    g.backward_with(y, seed.data().to_vec())?;
    let mut gg = crate::tensor::gpu::GpuGraph::new(d, false);
    let mut gvars = Vec::new();
    for t in x {
        gvars.push(gg.leaf(GpuTensor::upload(d, t)?));
    }
    let (gm, gv) = (GpuTensor::upload(d, mean)?, GpuTensor::upload(d, var)?);
    let gy = gg.batchnorm(gvars[0], gvars[1], gvars[2], 1e-5, (&gm, &gv), 0.1)?;
    gg.backward_with(gy, GpuTensor::upload(d, &seed)?)?;
    out.push(Check { case: case.into(), pass: "forward", error: error(&gg.value(gy).to_vec()?, g.value(y).data()), tolerance: TOL });
    let mut worst = 0.0f64;
    for (cv, gvv) in vars.iter().zip(&gvars) {
        let want = g.grad(*cv).map(<[f32]>::to_vec).unwrap_or_default();
        let got = match gg.grad(*gvv) {
            Some(t) => t.to_vec()?,
            None => vec![0.0; want.len()],
        };
        worst = worst.max(error(&got, &want));
    }
    out.push(Check { case: case.into(), pass: "backward", error: worst, tolerance: TOL });
    // Eval mode leaves the running statistics as they were.
    out.push(Check { case: "batchnorm eval running stats".into(), pass: "unchanged", error: error(&gm.to_vec()?, mean.data()), tolerance: 0.0 });
    Ok(())
}

/// Dropout has its own masks on the GPU, so it is checked for what it must do: the share
/// dropped is near p, kept values are scaled by 1/(1 − p), the gradient goes through the
/// same mask, and two seeds give two masks.
fn dropout_case(d: &GpuDevice, out: &mut Vec<Check>) -> Result<()> {
    let n = 20_000;
    let p = 0.3f32;
    let x = Tensor::full(vec![n], 2.0);
    let mut g = crate::tensor::gpu::GpuGraph::new(d, true);
    let v = g.leaf(GpuTensor::upload(d, &x)?);
    let y = g.dropout(v, p, 12345)?;
    let seed = uniform(&[n], 1.0, 9);
    g.backward_with(y, GpuTensor::upload(d, &seed)?)?;
    let ys = g.value(y).to_vec()?;
    let gx = g.grad(v).map(|t| t.to_vec()).transpose()?.unwrap_or_default();
    let keep = 2.0 / (1.0 - p);
    let dropped = ys.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    let scaled = ys.iter().all(|&v| v == 0.0 || (v - keep).abs() < 1e-5);
    let same_mask = ys.iter().zip(&gx).zip(seed.data()).all(|((&y, &g), &s)| if y == 0.0 { g == 0.0 } else { (g - s / (1.0 - p)).abs() < 1e-5 });
    // 4.5 standard deviations of a binomial share: a correct kernel never fails this.
    let sd = ((p * (1.0 - p)) as f64 / n as f64).sqrt();
    out.push(Check { case: format!("dropout p={p} share dropped"), pass: "forward", error: (dropped - p as f64).abs(), tolerance: 4.5 * sd });
    out.push(Check { case: "dropout kept values scaled".into(), pass: "forward", error: if scaled { 0.0 } else { 1.0 }, tolerance: 0.0 });
    out.push(Check { case: "dropout gradient masked alike".into(), pass: "backward", error: if same_mask { 0.0 } else { 1.0 }, tolerance: 0.0 });
    let y2 = g.dropout(v, p, 54321)?;
    let differs = g.value(y2).to_vec()?.iter().zip(&ys).any(|(a, b)| a != b);
    out.push(Check { case: "dropout other seed, other mask".into(), pass: "forward", error: if differs { 0.0 } else { 1.0 }, tolerance: 0.0 });
    Ok(())
}
