//! Every op whose products run in bf16 (`Graph::set_precision(Precision::Bf16)`) against the
//! fp32 op, forward and every gradient, inside the bound bf16 rounding allows; and the ops
//! that stay fp32 unchanged by it.
//!
//! The bound, per output element y = Σ_p a_p·b_p (+ a start value), with S = Σ_p |a_p·b_p|:
//! rounding each input to bf16 (8 significant bits, unit roundoff u = 2^-8) changes each
//! product by at most (2u + u²)·|a·b|; the products of two bf16 values are exact in fp32,
//! and fp32 accumulation of k terms errs by at most γ_k = k·2^-24 / (1 − k·2^-24) of S, in
//! the bf16 op and in the fp32 op alike. So
//!
//!   |y_bf16 − y_fp32| ≤ (2u + u² + 2·γ_k·(1 + u)²)·S,
//!
//! and against the fp32 op fed inputs already rounded to bf16 (the same products), only the
//! accumulation differs: |y_bf16 − y_rounded| ≤ 2·γ_k·(1 + u)²·S. S comes from running the
//! fp32 op on |inputs| with seed |grad_out|: every output and gradient of these ops is such
//! a sum of products. The first bound is what a user of bf16 gets; the second checks the
//! rounding itself (to nearest even, on every operand, forward and backward). Each check
//! also asserts that the bf16 result differs from fp32 somewhere, so a graph that ignored
//! its precision would fail.

mod common;

use convlm::tensor::kernels::bf16::round_bf16;
use convlm::tensor::{Activation, Conv1dSpec};
use convlm::tensor::{ConvTranspose1dSpec, Graph, MaskType, MaskedConv2dSpec, Padding, Precision, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const U: f64 = 1.0 / 256.0;

fn gamma(k: usize) -> f64 {
    let ku = (k + 1) as f64 * (2.0f64).powi(-24);
    ku / (1.0 - ku)
}

fn randn(shape: Vec<usize>, seed: u64) -> Tensor {
    Tensor::randn(shape, 1.0, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// The op's output and the gradients of its inputs, for the given inputs and upstream
/// gradient, in `precision`.
fn run<F: Fn(&mut Graph, &[Var]) -> Var>(f: &F, inputs: &[Tensor], seed: &[f32], precision: Precision) -> Vec<Vec<f32>> {
    let mut g = Graph::new(true);
    g.set_precision(precision).expect("the CPU runs this precision");
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let out = f(&mut g, &leaves);
    let mut results = vec![g.value(out).data().to_vec()];
    g.backward_with(out, seed.to_vec()).expect("backward");
    results.extend(leaves.iter().map(|&v| g.grad(v).map(<[f32]>::to_vec).unwrap_or_default()));
    results
}

fn abs(t: &Tensor) -> Tensor {
    Tensor::new(t.shape().to_vec(), t.data().iter().map(|v| v.abs()).collect()).expect("same shape")
}

/// Checks op `f` (inputs `inputs`, of which those at `not_rounded` — biases — enter by
/// addition, not as product operands, and get fp32 sums as gradients) with sums of at most
/// `k` products per output.
fn check<F: Fn(&mut Graph, &[Var]) -> Var>(name: &str, inputs: Vec<Tensor>, not_rounded: &[usize], k: usize, f: F) {
    let out_len = {
        let mut g = Graph::new(true);
        let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
        let out = f(&mut g, &leaves);
        g.value(out).numel()
    };
    let seed = randn(vec![out_len], 4242).into_data();
    let fp32 = run(&f, &inputs, &seed, Precision::Fp32);
    let bf16 = run(&f, &inputs, &seed, Precision::Bf16);
    let rounded_inputs: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(
            |(i, t)| {
                if not_rounded.contains(&i) {
                    t.clone()
                } else {
                    Tensor::new(t.shape().to_vec(), t.data().iter().map(|&v| round_bf16(v)).collect()).unwrap()
                }
            },
        )
        .collect();
    let rounded_seed: Vec<f32> = seed.iter().map(|&v| round_bf16(v)).collect();
    let rounded = run(&f, &rounded_inputs, &rounded_seed, Precision::Fp32);
    let sums = run(&f, &inputs.iter().map(abs).collect::<Vec<_>>(), &seed.iter().map(|v| v.abs()).collect::<Vec<_>>(), Precision::Fp32);
    let (loose, tight) = (2.0 * U + U * U + 2.0 * gamma(k) * (1.0 + U).powi(2), 2.0 * gamma(k) * (1.0 + U).powi(2));
    let mut differs = false;
    for (which, (((b, f), r), s)) in bf16.iter().zip(&fp32).zip(&rounded).zip(&sums).enumerate() {
        let what = if which == 0 { "output".to_string() } else { format!("grad of input {}", which - 1) };
        // A bias's gradient sums the upstream gradient, no product: fp32 in both graphs.
        let r = if which > 0 && not_rounded.contains(&(which - 1)) { f } else { r };
        assert_eq!(b.len(), f.len(), "{name} {what}");
        for (i, (((&b, &f), &r), &s)) in b.iter().zip(f).zip(r).zip(s).enumerate() {
            let (b, f, r, s) = (b as f64, f as f64, r as f64, s as f64);
            assert!((b - f).abs() <= loose * s + 1e-30, "{name} {what}[{i}]: bf16 {b} vs fp32 {f}, bound {}", loose * s);
            assert!((b - r).abs() <= tight * s + 1e-30, "{name} {what}[{i}]: bf16 {b} vs fp32 on rounded inputs {r}, bound {}", tight * s);
            differs |= b != f;
        }
    }
    assert!(differs, "{name}: the bf16 graph gave exactly the fp32 results (were its products fp32?)");
}

fn conv_spec(c_in: usize, c_out: usize, k: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> Conv1dSpec {
    Conv1dSpec { in_channels: c_in, out_channels: c_out, kernel_size: k, stride, padding, dilation, groups }
}

#[test]
fn conv1d_in_every_gemm_layout() {
    if !common::bf16_available() {
        return;
    }
    // (name, batch, len, spec): stride-1 windows read in place (batch-wide and per item),
    // dilated columns (im2col), grouped per-tap GEMMs, strided columns.
    let cases = [
        ("windowed causal", 3, 40, conv_spec(24, 40, 3, 1, Padding::causal(3, 1), 1, 1)),
        ("windowed unpadded", 2, 30, conv_spec(16, 33, 4, 1, Padding::Symmetric(0), 1, 1)),
        ("dilated columns", 3, 25, conv_spec(20, 28, 2, 1, Padding::causal(2, 4), 4, 1)),
        ("grouped taps", 2, 20, conv_spec(16, 24, 3, 1, Padding::Symmetric(2), 2, 2)),
        ("strided", 2, 33, conv_spec(12, 20, 3, 2, Padding::Symmetric(1), 1, 1)),
    ];
    for (n, (name, batch, len, spec)) in cases.into_iter().enumerate() {
        let [o, i, k] = spec.weight_shape();
        let seed = 10 * n as u64;
        let inputs = vec![randn(vec![batch, len, spec.in_channels], seed), randn(vec![o, i, k], seed + 1), randn(vec![o], seed + 2)];
        let terms = (i * k).max(o * k).max(batch * len);
        check(name, inputs, &[2], terms, |g, v| g.conv1d(v[0], v[1], Some(v[2]), &spec).unwrap());
    }
}

#[test]
fn linear_transposed_conv_and_masked_conv2d() {
    if !common::bf16_available() {
        return;
    }
    let inputs = vec![randn(vec![5, 7, 48], 1), randn(vec![36, 48], 2), randn(vec![36], 3)];
    check("linear", inputs, &[2], 48 * 36, |g, v| g.linear(v[0], v[1], Some(v[2])).unwrap());

    let spec = ConvTranspose1dSpec { in_channels: 16, out_channels: 12, kernel_size: 4, stride: 2, padding: 1, output_padding: 0, dilation: 1, groups: 2 };
    let inputs = vec![randn(vec![2, 15, 16], 4), randn(vec![16, 6, 4], 5), randn(vec![12], 6)];
    check("conv_transpose1d", inputs, &[2], 2 * 30 * 16, |g, v| g.conv_transpose1d(v[0], v[1], Some(v[2]), &spec).unwrap());

    let spec = MaskedConv2dSpec { in_channels: 6, out_channels: 10, kernel_h: 3, kernel_w: 3, mask: MaskType::B };
    let inputs = vec![randn(vec![2, 5, 6, 6], 7), randn(vec![10, 6, 3, 3], 8), randn(vec![10], 9)];
    check("masked_conv2d", inputs, &[2], 2 * 30 * 10, |g, v| g.masked_conv2d(v[0], v[1], Some(v[2]), &spec).unwrap());
}

/// The fused output conv + loss in bf16 equals its composition in bf16 (the conv's products
/// in bf16, the loss in fp32), whose conv the test above bounds: loss and every gradient.
#[test]
fn the_fused_head_in_bf16_is_the_bf16_conv_then_the_fp32_loss() {
    if !common::bf16_available() {
        return;
    }
    let spec = conv_spec(24, 50, 3, 1, Padding::causal(3, 1), 1, 1);
    let (batch, len) = (3, 90); // 270 rows: two epilogue blocks of 192 rows
    let x = randn(vec![batch, len, 24], 1);
    let w = Tensor::randn(vec![50, 24, 3], 0.3, &mut ChaCha8Rng::seed_from_u64(2));
    let b = randn(vec![50], 3);
    let targets: Vec<i64> = (0..batch * len).map(|i| if i % 17 == 5 { -1 } else { (i * 7 % 50) as i64 }).collect();
    let run_head = |fused: bool, precision: Precision| {
        let mut g = Graph::new(true);
        g.set_precision(precision).unwrap();
        let (xv, wv, bv) = (g.leaf(x.clone()), g.leaf(w.clone()), g.leaf(b.clone()));
        let loss = if fused {
            g.conv1d_cross_entropy(xv, wv, Some(bv), &spec, &targets).unwrap()
        } else {
            let logits = g.conv1d(xv, wv, Some(bv), &spec).unwrap();
            g.cross_entropy(logits, &targets).unwrap()
        };
        g.backward(loss).unwrap();
        [g.value(loss).data().to_vec(), g.grad(xv).unwrap().to_vec(), g.grad(wv).unwrap().to_vec(), g.grad(bv).unwrap().to_vec()]
    };
    let fused = run_head(true, Precision::Bf16);
    let composed = run_head(false, Precision::Bf16);
    for (what, (f, c)) in ["loss", "grad x", "grad w", "grad b"].iter().zip(fused.iter().zip(&composed)) {
        common::assert_close(&format!("bf16 fused head {what}"), f, c, 1e-6, 1e-4);
    }
    // And the bf16 loss is near the fp32 one: bf16 moves each logit by at most its bound,
    // and the loss by at most twice the largest logit change.
    let fp32 = run_head(true, Precision::Fp32);
    let (l16, l32) = (fused[0][0] as f64, fp32[0][0] as f64);
    assert!(l16 != l32 && (l16 - l32).abs() < 0.02 * l32.abs(), "loss {l16} (bf16) vs {l32} (fp32)");
}

/// Activations, norms, the softmax and the loss do not depend on the graph's precision.
#[test]
fn ops_without_products_stay_fp32_bit_for_bit() {
    if !common::bf16_available() {
        return;
    }
    let x = randn(vec![4, 9, 16], 1);
    let gain = randn(vec![16], 2);
    let shift = randn(vec![16], 3);
    let dw = randn(vec![16, 1, 3], 4);
    let targets: Vec<i64> = (0..36).map(|i| i % 16).collect();
    let spec = conv_spec(16, 16, 3, 1, Padding::causal(3, 1), 1, 16); // depthwise: a direct kernel
    let f = |g: &mut Graph, v: &[Var]| {
        let h = g.layernorm(v[0], v[1], v[2], 1e-5).unwrap();
        let h = g.activation(h, Activation::Gelu);
        let h = g.conv1d(h, v[3], None, &spec).unwrap();
        g.cross_entropy(h, &targets).unwrap()
    };
    let seed = [1.0f32];
    let a = run(&f, &[x.clone(), gain.clone(), shift.clone(), dw.clone()], &seed, Precision::Fp32);
    let b = run(&f, &[x, gain, shift, dw], &seed, Precision::Bf16);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "result {i} changed with the precision");
    }
}

#[test]
fn a_graph_says_its_precision() {
    let mut g = Graph::new(true);
    assert_eq!(g.precision(), Precision::Fp32);
    match g.set_precision(Precision::Bf16) {
        Ok(()) => assert_eq!(g.precision(), Precision::Bf16),
        Err(e) => {
            assert!(!common::bf16_available());
            assert!(e.to_string().contains("AVX512_BF16"), "{e}");
            assert_eq!(g.precision(), Precision::Fp32);
        }
    }
}
