//! Finite-difference gradient checks for every differentiable op that has no PyTorch golden
//! case (the convolutions are checked against ../shared/golden/conv_ops.json instead).
//!
//! For each op: loss = Σ op(inputs) · R for a fixed random R; the analytic gradient of every
//! input is compared with central differences (f64 accumulation of the loss).

use convlm::tensor::{Activation, Graph, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const EPS: f32 = 1e-2;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Runs `f` on leaves built from `inputs`, returning (loss, output size).
fn eval<F>(f: &F, inputs: &[Tensor], training: bool, r: Option<&[f32]>) -> (Graph, Var, Vec<Var>, Vec<f32>)
where
    F: Fn(&mut Graph, &[Var]) -> Var,
{
    let mut g = Graph::new(training);
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let out = f(&mut g, &leaves);
    let n = g.value(out).numel();
    let r: Vec<f32> = match r {
        Some(r) => r.to_vec(),
        None => Tensor::randn(vec![n], 1.0, &mut rng(99)).into_data(),
    };
    let loss = g.weighted_sum(out, &r).expect("weights sized to output");
    (g, loss, leaves, r)
}

fn check<F>(name: &str, inputs: Vec<Tensor>, f: F)
where
    F: Fn(&mut Graph, &[Var]) -> Var,
{
    check_mode(name, true, inputs, f)
}

fn check_mode<F>(name: &str, training: bool, inputs: Vec<Tensor>, f: F)
where
    F: Fn(&mut Graph, &[Var]) -> Var,
{
    check_eps(name, training, EPS, inputs, f)
}

/// For ops linear in each input separately (a convolution in its input and in its filter),
/// central differences are exact at any step, so a large step keeps the f32 rounding of a long
/// FFT forward out of the estimate.
fn check_multilinear<F>(name: &str, inputs: Vec<Tensor>, f: F)
where
    F: Fn(&mut Graph, &[Var]) -> Var,
{
    check_eps(name, true, 0.5, inputs, f)
}

fn check_eps<F>(name: &str, training: bool, eps: f32, inputs: Vec<Tensor>, f: F)
where
    F: Fn(&mut Graph, &[Var]) -> Var,
{
    let (mut g, loss, leaves, r) = eval(&f, &inputs, training, None);
    g.backward(loss).expect("scalar loss");
    let mut worst = 0.0f64;
    for (i, input) in inputs.iter().enumerate() {
        let analytic = g.grad(leaves[i]).map(|s| s.to_vec()).unwrap_or_else(|| vec![0.0; input.numel()]);
        for (j, &a) in analytic.iter().enumerate() {
            let mut plus = inputs.clone();
            plus[i].data_mut()[j] += eps;
            let mut minus = inputs.clone();
            minus[i].data_mut()[j] -= eps;
            let lp = {
                let (g, l, _, _) = eval(&f, &plus, training, Some(&r));
                g.value(l).data()[0] as f64
            };
            let lm = {
                let (g, l, _, _) = eval(&f, &minus, training, Some(&r));
                g.value(l).data()[0] as f64
            };
            let numeric = (lp - lm) / (2.0 * eps as f64);
            let a = a as f64;
            let err = (a - numeric).abs() / (1e-1 + numeric.abs());
            worst = worst.max(err);
            assert!(err < 2e-2, "{name}: input {i} element {j}: analytic {a} vs numeric {numeric}");
        }
    }
    eprintln!("{name}: worst relative error {worst:.2e}");
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape.to_vec(), 1.0, &mut rng(seed))
}

#[test]
fn activations() {
    for (i, act) in [Activation::Tanh, Activation::Relu, Activation::Gelu, Activation::Sigmoid].into_iter().enumerate() {
        // keep relu inputs away from the kink
        let mut x = randn(&[2, 3, 4], i as u64);
        x.data_mut().iter_mut().for_each(|v| {
            if v.abs() < 0.05 {
                *v += 0.2
            }
        });
        check(&format!("{act:?}"), vec![x], move |g, v| g.activation(v[0], act));
    }
}

#[test]
fn add_mul_scale() {
    check("add", vec![randn(&[3, 4], 1), randn(&[3, 4], 2)], |g, v| g.add(v[0], v[1]).unwrap());
    check("mul", vec![randn(&[3, 4], 3), randn(&[3, 4], 4)], |g, v| g.mul(v[0], v[1]).unwrap());
    check("mul same input", vec![randn(&[5], 5)], |g, v| g.mul(v[0], v[0]).unwrap());
    check("scale", vec![randn(&[6], 6)], |g, v| g.scale(v[0], -1.7));
}

#[test]
fn glu() {
    check("glu", vec![randn(&[2, 3, 6], 7)], |g, v| g.glu(v[0]).unwrap());
}

#[test]
fn linear_with_and_without_bias() {
    check("linear", vec![randn(&[2, 3, 4], 8), randn(&[5, 4], 9), randn(&[5], 10)], |g, v| g.linear(v[0], v[1], Some(v[2])).unwrap());
    check("linear no bias", vec![randn(&[7, 4], 11), randn(&[3, 4], 12)], |g, v| g.linear(v[0], v[1], None).unwrap());
}

#[test]
fn embedding() {
    let ids = [3u32, 0, 3, 1, 2, 2];
    check("embedding", vec![randn(&[4, 5], 13)], move |g, v| g.embedding(v[0], &ids, &[2, 3]).unwrap());
}

#[test]
fn batchnorm_train_and_eval() {
    let (rm, rv) = (vec![0.1, -0.2, 0.3], vec![0.5, 1.5, 2.0]);
    check("batchnorm train", vec![randn(&[2, 5, 3], 14), randn(&[3], 15), randn(&[3], 16)], |g, v| g.batchnorm(v[0], v[1], v[2], 1e-5, (&[], &[])).unwrap().0);
    check_mode("batchnorm eval", false, vec![randn(&[2, 5, 3], 17), randn(&[3], 18), randn(&[3], 19)], move |g, v| {
        g.batchnorm(v[0], v[1], v[2], 1e-5, (&rm, &rv)).unwrap().0
    });
}

#[test]
fn layernorm() {
    check("layernorm", vec![randn(&[3, 4, 5], 20), randn(&[5], 21), randn(&[5], 22)], |g, v| g.layernorm(v[0], v[1], v[2], 1e-5).unwrap());
}

#[test]
fn dropout_is_a_fixed_mask() {
    check("dropout", vec![randn(&[4, 8], 23)], |g, v| g.dropout(v[0], 0.3, &mut rng(5)).unwrap());
}

#[test]
fn shape_ops() {
    check("pad", vec![randn(&[2, 3, 4], 24)], |g, v| g.pad(v[0], 1, 2, 1).unwrap());
    check("slice", vec![randn(&[2, 5, 3], 25)], |g, v| g.slice(v[0], 1, 1, 4).unwrap());
    check("concat", vec![randn(&[2, 3, 2], 26), randn(&[2, 3, 4], 27)], |g, v| g.concat(&[v[0], v[1]], 2).unwrap());
    check("reshape", vec![randn(&[2, 6], 28)], |g, v| g.reshape(v[0], &[3, 4]).unwrap());
    check("transpose", vec![randn(&[2, 3, 4], 29)], |g, v| g.transpose_last2(v[0]).unwrap());
}

#[test]
fn cross_entropy_with_ignored_targets() {
    let targets = [2i64, -1, 0, 4, -1, 1];
    check("cross_entropy", vec![randn(&[2, 3, 5], 30)], move |g, v| g.cross_entropy(v[0], &targets).unwrap());
}

#[test]
fn conv1d_cross_entropy_fused_head() {
    use convlm::tensor::kernels::conv1d::{Conv1dSpec, Padding};
    // Causal K = 3 head over (B=2, T=4, C_in=3) into V = 5, with ignored targets.
    let spec = Conv1dSpec { in_channels: 3, out_channels: 5, kernel_size: 3, stride: 1, padding: Padding::causal(3, 1), dilation: 1, groups: 1 };
    let targets = [2i64, -1, 0, 4, 1, 3, -1, 0];
    let inputs = vec![randn(&[2, 4, 3], 31), randn(&[5, 3, 3], 32), randn(&[5], 33)];
    check("conv1d_cross_entropy", inputs, move |g, v| g.conv1d_cross_entropy(v[0], v[1], Some(v[2]), &spec, &targets).unwrap());
}

#[test]
fn long_conv_direct_and_fft() {
    // T = 7 runs the direct kernel, T = 130 the FFT (kernels::long_conv::FFT_MIN_LEN = 128);
    // L > T leaves taps the forward never reads (zero gradient); an odd batch leaves one FFT
    // lane empty.
    for (b, t, c, l, seed) in [(2, 7, 3, 9, 40), (3, 130, 2, 130, 41)] {
        let inputs = vec![randn(&[b, t, c], seed), randn(&[c, l], seed + 100), randn(&[c], seed + 200)];
        check_multilinear(&format!("long_conv T={t}"), inputs, |g, v| g.long_conv(v[0], v[1], v[2]).unwrap());
    }
}

#[test]
fn long_conv_rejects_bad_shapes() {
    let mut g = Graph::new(true);
    let u = g.leaf(randn(&[1, 5, 2], 1));
    let short = g.leaf(randn(&[2, 4], 2));
    let d = g.leaf(randn(&[2], 3));
    let err = g.long_conv(u, short, d).unwrap_err().to_string();
    assert!(err.contains("shorter than the sequence"), "{err}");
    let wide = g.leaf(randn(&[3, 5], 4));
    let err = g.long_conv(u, wide, d).unwrap_err().to_string();
    assert!(err.contains("2 channels but k has 3"), "{err}");
}

#[test]
fn sin_and_scale_channels() {
    check("sin", vec![randn(&[3, 5], 42)], |g, v| g.sin(v[0]));
    check("scale_channels", vec![randn(&[2, 3, 4], 43), randn(&[4], 44)], |g, v| g.scale_channels(v[0], v[1]).unwrap());
    // Hyena's filter layer: sin(freq · linear(z)), one freq shared by the layer.
    check("sin(freq * linear)", vec![randn(&[6, 3], 45), randn(&[4, 3], 46), randn(&[4], 47), randn(&[4], 48)], |g, v| {
        let h = g.linear(v[0], v[1], Some(v[2])).unwrap();
        let h = g.scale_channels(h, v[3]).unwrap();
        g.sin(h)
    });
    check("scale_channels same input", vec![randn(&[4], 49)], |g, v| g.scale_channels(v[0], v[0]).unwrap());
}

#[test]
fn depthwise_conv1d() {
    // groups = C_in = C_out, stride 1: the direct depthwise kernel (Hyena's short conv is the
    // causal k = 3 case), row blocks of 64 crossing a batch boundary.
    use convlm::tensor::{Conv1dSpec, Padding};
    for (len, ch, k, dilation, padding, seed) in [(40, 3, 3, 1, Padding::causal(3, 1), 50), (6, 4, 2, 2, Padding::Symmetric(1), 53)] {
        let spec = Conv1dSpec { in_channels: ch, out_channels: ch, kernel_size: k, stride: 1, padding, dilation, groups: ch };
        let inputs = vec![randn(&[2, len, ch], seed), randn(&[ch, 1, k], seed + 1), randn(&[ch], seed + 2)];
        check(&format!("depthwise k={k} d={dilation}"), inputs, move |g, v| g.conv1d(v[0], v[1], Some(v[2]), &spec).unwrap());
    }
}
