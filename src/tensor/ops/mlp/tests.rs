use super::Dense;
use crate::tensor::{Activation, Graph, Tensor, Var};

fn input(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..n).map(|i| (i as f32 * 0.61 + seed).sin() * 0.9).collect()).unwrap()
}

/// Values and gradients of one forward and backward, as bits: the output, then the
/// gradients of x, fc1's weight and bias, fc2's weight and bias.
type Run = Vec<Vec<u32>>;

/// Runs `x (B, T, d) → mlp → + x·twice` so that x's gradient has a second term (the MLP's is
/// then added, not written), and the loss Σ out·r.
fn run(act: Activation, biases: bool, fused: bool) -> Run {
    let (b, t, d, h) = (3, 200, 48, 80);
    let mut g = Graph::new(true);
    let x = g.leaf(input(&[b, t, d], 0.1));
    let w1 = g.leaf(input(&[h, d], 0.2));
    let w2 = g.leaf(input(&[d, h], 0.3));
    let (b1, b2) = match biases {
        true => (Some(g.leaf(input(&[h], 0.4))), Some(g.leaf(input(&[d], 0.5)))),
        false => (None, None),
    };
    let out = if fused {
        g.mlp(x, Dense { weight: w1, bias: b1 }, act, Dense { weight: w2, bias: b2 }).unwrap()
    } else {
        let z = g.linear(x, w1, b1).unwrap();
        let z = g.activation(z, act);
        g.linear(z, w2, b2).unwrap()
    };
    let twice = g.scale(x, 2.0);
    let y = g.add(out, twice).unwrap();
    let r = g.constant(input(&[b, t, d], 0.7));
    let p = g.mul(y, r).unwrap();
    let loss = g.sum(p);
    g.backward(loss).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut all = vec![bits(g.value(out).data())];
    for v in [Some(x), Some(w1), b1, Some(w2), b2].into_iter().flatten() {
        all.push(bits(g.grad(v).unwrap()));
    }
    all
}

#[test]
fn the_fused_mlp_equals_linear_activation_linear_bit_for_bit() {
    for act in [Activation::Gelu, Activation::Tanh, Activation::Relu, Activation::Sigmoid] {
        for biases in [true, false] {
            let (fused, apart) = (run(act, biases, true), run(act, biases, false));
            assert_eq!(fused.len(), if biases { 6 } else { 4 });
            for (i, (f, a)) in fused.iter().zip(&apart).enumerate() {
                assert!(f == a, "{act:?}, biases {biases}: output/gradient {i} differs");
            }
            assert!(fused.iter().all(|v| v.iter().any(|&b| f32::from_bits(b) != 0.0)), "{act:?}: every gradient is nonzero somewhere");
        }
    }
}

#[test]
fn mlp_gradients_match_finite_differences() {
    let (d, h) = (3, 5);
    let loss = |x: &Tensor, w1: &Tensor, w2: &Tensor| -> (f64, [Vec<f32>; 3]) {
        let mut g = Graph::new(true);
        let vars: Vec<Var> = [x, w1, w2].iter().map(|t| g.leaf((*t).clone())).collect();
        let out = g.mlp(vars[0], Dense { weight: vars[1], bias: None }, Activation::Gelu, Dense { weight: vars[2], bias: None }).unwrap();
        let r = g.constant(input(g.shape(out), 0.9));
        let p = g.mul(out, r).unwrap();
        let l = g.sum(p);
        g.backward(l).unwrap();
        let grads = [0, 1, 2].map(|i| g.grad(vars[i]).unwrap().to_vec());
        (g.value(l).data()[0] as f64, grads)
    };
    let (x, w1, w2) = (input(&[2, 4, d], 0.3), input(&[h, d], 1.1), input(&[d, h], 2.3));
    let (_, grads) = loss(&x, &w1, &w2);
    for (which, grad) in grads.iter().enumerate() {
        for (i, &want) in grad.iter().enumerate() {
            let mut ts = [x.clone(), w1.clone(), w2.clone()];
            let eps = 1e-2;
            ts[which].data_mut()[i] += eps;
            let up = loss(&ts[0], &ts[1], &ts[2]).0;
            ts[which].data_mut()[i] -= 2.0 * eps;
            let down = loss(&ts[0], &ts[1], &ts[2]).0;
            let fd = (up - down) / (2.0 * eps as f64);
            assert!((fd - want as f64).abs() < 2e-3, "input {which}[{i}]: {fd} vs {want}");
        }
    }
}

#[test]
fn weights_that_do_not_chain_are_refused_with_their_shapes() {
    let mut g = Graph::new(false);
    let x = g.leaf(input(&[2, 4, 6], 0.0));
    let w1 = g.leaf(input(&[8, 6], 0.0));
    let w2 = g.leaf(input(&[6, 7], 0.0));
    let bad_bias = g.leaf(input(&[7], 0.0));
    let dense = |weight, bias| Dense { weight, bias };
    let err = g.mlp(x, dense(w1, None), Activation::Gelu, dense(w2, None)).unwrap_err().to_string();
    assert!(err.contains("mlp") && err.contains("[8, 6]") && err.contains("[6, 7]"), "{err}");
    let err = g.mlp(x, dense(w1, Some(bad_bias)), Activation::Gelu, dense(w1, None)).unwrap_err().to_string();
    assert!(err.contains("do not chain") || err.contains("bias [7] is not (8)"), "{err}");
    let w2 = g.leaf(input(&[5, 8], 0.0));
    let err = g.mlp(x, dense(w1, Some(bad_bias)), Activation::Gelu, dense(w2, None)).unwrap_err().to_string();
    assert!(err.contains("bias [7] is not (8)"), "{err}");
    let out = g.mlp(x, dense(w1, None), Activation::Relu, dense(w2, None)).unwrap();
    assert_eq!(g.shape(out), [2, 4, 5]);
}
