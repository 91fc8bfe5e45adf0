//! `Graph::conv1d_cross_entropy` (the fused output conv + loss) against the composition it
//! replaces, `conv1d` then `cross_entropy`, whose ops have golden and gradient checks of
//! their own: the same loss and the same gradients for x, weight and bias.

use convlm::tensor::kernels::conv1d::{Conv1dSpec, Padding};
use convlm::tensor::kernels::matmul::EPILOGUE_ROWS;
use convlm::tensor::{Graph, Tensor, IGNORE_INDEX};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn spec(c_in: usize, v: usize, kernel_size: usize, stride: usize, padding: Padding, dilation: usize, groups: usize) -> Conv1dSpec {
    Conv1dSpec { in_channels: c_in, out_channels: v, kernel_size, stride, padding, dilation, groups }
}

/// (loss, grad x, grad w, grad b) of one backward with upstream gradient `seed`.
#[allow(clippy::too_many_arguments)]
fn run(fused: bool, training: bool, spec: &Conv1dSpec, x: &Tensor, w: &Tensor, b: &Tensor, targets: &[i64], seed: f32) -> (f32, Vec<Vec<f32>>) {
    let mut g = Graph::new(training);
    let (xv, wv, bv) = (g.leaf(x.clone()), g.leaf(w.clone()), g.leaf(b.clone()));
    let loss = if fused {
        g.conv1d_cross_entropy(xv, wv, Some(bv), spec, targets).unwrap()
    } else {
        let logits = g.conv1d(xv, wv, Some(bv), spec).unwrap();
        g.cross_entropy(logits, targets).unwrap()
    };
    g.backward_with(loss, vec![seed]).unwrap();
    let grads = [xv, wv, bv].iter().map(|&v| g.grad(v).unwrap().to_vec()).collect();
    (g.value(loss).data()[0], grads)
}

fn case(spec: Conv1dSpec, batch: usize, len: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Tensor::randn(vec![batch, len, spec.in_channels], 1.0, &mut rng);
    let w = Tensor::randn(spec.weight_shape().to_vec(), 0.3, &mut rng);
    let b = Tensor::randn(vec![spec.out_channels], 0.3, &mut rng);
    let rows = batch * spec.output_len(len).unwrap();
    let v = spec.out_channels as i64;
    let targets: Vec<i64> = (0..rows).map(|_| if rng.gen_bool(0.1) { IGNORE_INDEX } else { rng.gen_range(0..v) }).collect();
    for (training, upstream) in [(true, 1.0f32), (true, 2.5), (false, 1.0)] {
        let (want_loss, want) = run(false, training, &spec, &x, &w, &b, &targets, upstream);
        let (loss, got) = run(true, training, &spec, &x, &w, &b, &targets, upstream);
        assert!((loss - want_loss).abs() <= 1e-5 * want_loss.abs(), "{spec:?}: loss {loss} vs {want_loss}");
        for (name, (g, w)) in ["x", "weight", "bias"].iter().zip(got.iter().zip(&want)) {
            let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, e)) in g.iter().zip(w).enumerate() {
                assert!((a - e).abs() <= 1e-5 * scale + 1e-7, "{spec:?} training {training} seed {upstream}: grad {name}[{i}] {a} vs {e}");
            }
        }
    }
}

#[test]
fn causal_head_over_several_row_blocks_matches_conv_then_loss() {
    // 2 items x (EPILOGUE_ROWS + 9) steps: two full blocks of rows and a partial one.
    case(spec(16, 37, 3, 1, Padding::causal(3, 1), 1, 1), 2, EPILOGUE_ROWS + 9, 1);
}

#[test]
fn strided_dilated_and_pointwise_heads_match_conv_then_loss() {
    case(spec(8, 11, 3, 2, Padding::Symmetric(2), 2, 1), 2, 25, 2);
    case(spec(12, 29, 1, 1, Padding::Symmetric(0), 1, 1), 4, 33, 3);
}

#[test]
fn grouped_heads_run_as_the_composition() {
    case(spec(8, 10, 2, 1, Padding::causal(2, 1), 1, 2), 2, 9, 4);
}

#[test]
fn bad_targets_and_shapes_are_errors_naming_the_op() {
    let s = spec(4, 5, 3, 1, Padding::causal(3, 1), 1, 1);
    let mut g = Graph::new(true);
    let x = g.leaf(Tensor::zeros(vec![2, 3, 4]));
    let w = g.leaf(Tensor::zeros(vec![5, 4, 3]));
    let b = g.leaf(Tensor::zeros(vec![5]));
    let err = |r: convlm::Result<convlm::tensor::Var>| r.err().map(|e| e.to_string()).unwrap_or_default();
    let msg = err(g.conv1d_cross_entropy(x, w, Some(b), &s, &[0, 1, 2, 3, 4, 5]));
    assert!(msg.contains("conv1d_cross_entropy") && msg.contains("target 5 is outside the vocabulary of 5"), "{msg}");
    let msg = err(g.conv1d_cross_entropy(x, w, Some(b), &s, &[0, 1, 2]));
    assert!(msg.contains("3 targets for 6 rows"), "{msg}");
    let msg = err(g.conv1d_cross_entropy(x, w, Some(b), &s, &[IGNORE_INDEX; 6]));
    assert!(msg.contains("every target is ignored"), "{msg}");
    let msg = err(g.conv1d_cross_entropy(x, b, Some(b), &s, &[0; 6]));
    assert!(msg.contains("weight has shape [5], expected [5, 4, 3]"), "{msg}");
}
