//! The moving average of the weights (`ema_decay`): each update follows
//! `torch.optim.swa_utils.get_ema_multi_avg_fn` (`avg.lerp_(p, 1 - decay)`) with
//! TensorFlow's warm-up, evaluated independently in f64; the average starts at the initial
//! weights, never changes the steps themselves, swaps in and out exactly, and is what
//! `averaged` exports.

use convlm::nn::ParamStore;
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::Tensor;

fn store(n: usize) -> ParamStore {
    let mut s = ParamStore::new();
    s.add("w", Tensor::new([n, 2], (0..2 * n).map(|i| ((i as f32) * 0.37).sin()).collect()).unwrap());
    s.add("b", Tensor::new([3], vec![0.1, -0.3, 0.5]).unwrap());
    s
}

fn set_grads(s: &mut ParamStore, k: usize) {
    for (j, p) in s.params_mut().iter_mut().enumerate() {
        for (i, g) in p.grad.data_mut().iter_mut().enumerate() {
            *g = (((i * 7 + j * 3) as f32) * 0.01 + k as f32).cos();
        }
    }
}

fn values(s: &ParamStore) -> Vec<Vec<f64>> {
    s.params().iter().map(|p| p.value.data().iter().map(|&x| x as f64).collect()).collect()
}

#[test]
fn the_average_follows_the_weights_with_a_warm_up() {
    let decay = 0.8f64;
    for kind in [OptimizerKind::Sgd, OptimizerKind::AdamW] {
        let cfg = OptimizerConfig { kind, lr: 0.05, ema_decay: decay as f32, ..Default::default() };
        let mut s = store(4);
        let mut opt = Optimizer::new(&cfg, &s).unwrap();
        // Before any step the average is the initial weights (AveragedModel's copy).
        assert_eq!(opt.averaged(&s).params()[0].value, s.params()[0].value);
        let mut expected = values(&s);
        for t in 0..30usize {
            set_grads(&mut s, t);
            opt.step(&mut s, 0.05);
            // Update t (from 0) decays by min(decay, (1 + t) / (10 + t)): 0.1 at first, then
            // growing to 0.8 from t = 26 on.
            let d = decay.min((1.0 + t as f64) / (10.0 + t as f64));
            for (e, p) in expected.iter_mut().zip(values(&s)) {
                for (e, p) in e.iter_mut().zip(p) {
                    *e = d * *e + (1.0 - d) * p;
                }
            }
        }
        let averaged = opt.averaged(&s);
        for (p, e) in averaged.params().iter().zip(&expected) {
            for (&got, &want) in p.value.data().iter().zip(e) {
                assert!((got as f64 - want).abs() <= 1e-5, "{kind:?} {}: {got} vs {want}", p.name);
            }
        }
        // The live weights are not the average.
        assert_ne!(averaged.params()[0].value, s.params()[0].value);
    }
}

#[test]
fn the_average_never_changes_the_steps() {
    let plain = OptimizerConfig { kind: OptimizerKind::AdamW, weight_decay: 0.1, ..Default::default() };
    let averaging = OptimizerConfig { ema_decay: 0.99, ..plain.clone() };
    let (mut a, mut b) = (store(5), store(5));
    let (mut oa, mut ob) = (Optimizer::new(&plain, &a).unwrap(), Optimizer::new(&averaging, &b).unwrap());
    for k in 0..5 {
        set_grads(&mut a, k);
        set_grads(&mut b, k);
        oa.step(&mut a, 1e-2);
        ob.step(&mut b, 1e-2);
    }
    for (x, y) in a.params().iter().zip(b.params()) {
        assert_eq!(x.value, y.value, "{}", x.name);
    }
    // Without averages there is nothing to swap or export.
    let before = a.clone();
    oa.swap_averages(&mut a);
    assert_eq!(a.params()[0].value, before.params()[0].value);
    assert_eq!(oa.averaged(&a).params()[0].value, a.params()[0].value);
}

#[test]
fn swapping_twice_restores_the_weights_and_the_average() {
    let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, ema_decay: 0.9, ..Default::default() };
    let mut s = store(4);
    let mut opt = Optimizer::new(&cfg, &s).unwrap();
    for k in 0..3 {
        set_grads(&mut s, k);
        opt.step(&mut s, 0.1);
    }
    let (live, averaged, state) = (s.clone(), opt.averaged(&s), opt.state_tensors());
    opt.swap_averages(&mut s);
    for (p, a) in s.params().iter().zip(averaged.params()) {
        assert_eq!(p.value, a.value, "swapped in: {}", p.name);
    }
    opt.swap_averages(&mut s);
    for (p, l) in s.params().iter().zip(live.params()) {
        assert_eq!(p.value, l.value, "swapped back: {}", p.name);
    }
    assert_eq!(opt.state_tensors(), state);
}

#[test]
fn big_tensors_average_like_small_ones() {
    // Past the parallel chunk size the average is updated in chunks on the pool: the same
    // values as inline.
    // No weight decay: it applies to the 2-D weight, not to the 1-D pieces below.
    let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, weight_decay: 0.0, ema_decay: 0.95, ..Default::default() };
    let mut big = store(60_001);
    let start = big.clone();
    let mut ob = Optimizer::new(&cfg, &big).unwrap();
    for k in 0..4 {
        set_grads(&mut big, k);
        ob.step(&mut big, 0.1);
    }
    // The same elements averaged one small tensor at a time.
    let mut pieces = ParamStore::new();
    for (j, c) in start.params()[0].value.data().chunks(1000).enumerate() {
        pieces.add(format!("w{j}"), Tensor::new([c.len()], c.to_vec()).unwrap());
    }
    let mut op = Optimizer::new(&cfg, &pieces).unwrap();
    for k in 0..4 {
        let grads: Vec<f32> = {
            let mut g = store(60_001);
            set_grads(&mut g, k);
            g.params()[0].grad.data().to_vec()
        };
        for (p, c) in pieces.params_mut().iter_mut().zip(grads.chunks(1000)) {
            p.grad.data_mut().copy_from_slice(c);
        }
        op.step(&mut pieces, 0.1);
    }
    let joined: Vec<f32> = op.averaged(&pieces).params().iter().flat_map(|p| p.value.data().to_vec()).collect();
    assert_eq!(ob.averaged(&big).params()[0].value.data(), &joined[..]);
}
