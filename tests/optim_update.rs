//! One or two steps of each optimizer on a tiny store, checked against the update formulas
//! evaluated independently in f64; weight decay only where `Param::decay` is set;
//! configuration validation.

use convlm::nn::ParamStore;
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::{Error, Tensor};

/// `w` (2x2, decayed), `b` (2, not decayed), `embedding.weight` (2x2, not decayed).
fn store() -> ParamStore {
    let mut s = ParamStore::new();
    s.add("w", Tensor::new([2, 2], vec![0.5, -1.0, 2.0, 0.25]).unwrap());
    s.add("b", Tensor::new([2], vec![0.1, -0.3]).unwrap());
    s.add("embedding.weight", Tensor::new([2, 2], vec![1.0, -2.0, 0.75, 0.0]).unwrap());
    s
}

/// Deterministic gradients for step `k` (1-based), different per step.
fn grads(k: usize) -> Vec<Vec<f64>> {
    let kf = k as f64;
    vec![vec![0.3 * kf, -0.2, 0.05 / kf, -1.5], vec![0.7, -0.1 * kf], vec![-0.25, 0.4 * kf, 0.0, 1.0 / kf]]
}

fn set_grads(s: &mut ParamStore, k: usize) {
    for (p, g) in s.params_mut().iter_mut().zip(grads(k)) {
        let g: Vec<f32> = g.iter().map(|&x| x as f32).collect();
        p.grad.data_mut().copy_from_slice(&g);
    }
}

fn initial() -> Vec<Vec<f64>> {
    store().params().iter().map(|p| p.value.data().iter().map(|&x| x as f64).collect()).collect()
}

const DECAY: [bool; 3] = [true, false, false];

fn run(cfg: &OptimizerConfig, lrs: &[f32]) -> ParamStore {
    let mut s = store();
    let mut opt = Optimizer::new(cfg, &s).unwrap();
    for (k, &lr) in lrs.iter().enumerate() {
        set_grads(&mut s, k + 1);
        opt.step(&mut s, lr);
    }
    assert_eq!(opt.steps_taken(), lrs.len() as u64);
    s
}

fn assert_close(s: &ParamStore, expected: &[Vec<f64>]) {
    for (p, e) in s.params().iter().zip(expected) {
        for (i, (&got, &want)) in p.value.data().iter().zip(e).enumerate() {
            let tol = 2e-6 * want.abs().max(1.0);
            assert!((got as f64 - want).abs() <= tol, "{}[{i}]: got {got}, expected {want}", p.name);
        }
    }
}

#[test]
fn sgd_momentum_two_steps() {
    let (lr, mom, wd) = (0.1, 0.9, 0.05);
    let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.05, ..Default::default() };
    let mut p = initial();
    let mut buf: Vec<Vec<f64>> = p.iter().map(|v| vec![0.0; v.len()]).collect();
    for k in 1..=2 {
        let g = grads(k);
        for t in 0..3 {
            for i in 0..p[t].len() {
                let d = g[t][i] + if DECAY[t] { wd * p[t][i] } else { 0.0 };
                buf[t][i] = if k == 1 { d } else { mom * buf[t][i] + d };
                p[t][i] -= lr * buf[t][i];
            }
        }
    }
    assert_close(&run(&cfg, &[0.1, 0.1]), &p);
}

#[test]
fn sgd_without_momentum_has_no_state() {
    let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.5, momentum: 0.0, weight_decay: 0.0, ..Default::default() };
    let mut p = initial();
    for (t, g) in grads(1).iter().enumerate() {
        for i in 0..g.len() {
            p[t][i] -= 0.5 * g[i];
        }
    }
    assert_close(&run(&cfg, &[0.5]), &p);
    let s = store();
    assert!(Optimizer::new(&cfg, &s).unwrap().state_tensors().is_empty());
}

/// Adam (`decoupled` false, L2) or AdamW (`decoupled` true), `lrs.len()` steps, in f64.
fn adam_reference(decoupled: bool, lrs: &[f64], b1: f64, b2: f64, eps: f64, wd: f64) -> Vec<Vec<f64>> {
    let mut p = initial();
    let mut m: Vec<Vec<f64>> = p.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut v = m.clone();
    for (k0, &lr) in lrs.iter().enumerate() {
        let k = k0 + 1;
        let g = grads(k);
        for t in 0..3 {
            for i in 0..p[t].len() {
                let mut gi = g[t][i];
                if DECAY[t] {
                    if decoupled {
                        p[t][i] *= 1.0 - lr * wd;
                    } else {
                        gi += wd * p[t][i];
                    }
                }
                m[t][i] = b1 * m[t][i] + (1.0 - b1) * gi;
                v[t][i] = b2 * v[t][i] + (1.0 - b2) * gi * gi;
                let mhat = m[t][i] / (1.0 - b1.powi(k as i32));
                let vhat = v[t][i] / (1.0 - b2.powi(k as i32));
                p[t][i] -= lr * mhat / (vhat.sqrt() + eps);
            }
        }
    }
    p
}

#[test]
fn adam_l2_two_steps() {
    let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr: 0.01, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.1, ..Default::default() };
    let want = adam_reference(false, &[0.01, 0.005], 0.9, 0.999, 1e-8, 0.1);
    assert_close(&run(&cfg, &[0.01, 0.005]), &want);
}

#[test]
fn adamw_two_steps() {
    let cfg = OptimizerConfig { kind: OptimizerKind::AdamW, lr: 0.01, betas: (0.8, 0.99), eps: 1e-6, weight_decay: 0.1, ..Default::default() };
    let want = adam_reference(true, &[0.01, 0.02], 0.8, 0.99, 1e-6, 0.1);
    assert_close(&run(&cfg, &[0.01, 0.02]), &want);
}

#[test]
fn adam_with_small_beta1_uses_other_lerp_branch() {
    let cfg = OptimizerConfig { kind: OptimizerKind::AdamW, lr: 0.01, betas: (0.3, 0.9), eps: 1e-8, weight_decay: 0.0, ..Default::default() };
    let want = adam_reference(true, &[0.01, 0.01], 0.3, 0.9, 1e-8, 0.0);
    assert_close(&run(&cfg, &[0.01, 0.01]), &want);
}

#[test]
fn adamw_decay_only_where_flagged() {
    // Zero gradients: the Adam step is 0, so only the decoupled decay moves parameters.
    let cfg = OptimizerConfig { kind: OptimizerKind::AdamW, lr: 0.1, weight_decay: 0.5, ..Default::default() };
    let mut s = store();
    let before = s.clone();
    let mut opt = Optimizer::new(&cfg, &s).unwrap();
    opt.step(&mut s, 0.1);
    let factor = (1.0f64 - 0.1 * 0.5) as f32;
    for (a, b) in s.params().iter().zip(before.params()) {
        if a.decay {
            let want: Vec<f32> = b.value.data().iter().map(|x| x * factor).collect();
            assert_eq!(a.value.data(), &want[..], "{}", a.name);
        } else {
            assert_eq!(a.value.data(), b.value.data(), "{} must not decay", a.name);
        }
    }
    assert!(s.params()[0].decay && !s.params()[1].decay && !s.params()[2].decay);
}

#[test]
fn sgd_and_adam_l2_decay_only_where_flagged() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        let cfg = OptimizerConfig { kind, lr: 0.1, weight_decay: 0.5, ..Default::default() };
        let mut s = store();
        let before = s.clone();
        let mut opt = Optimizer::new(&cfg, &s).unwrap();
        opt.step(&mut s, 0.1);
        assert_ne!(s.params()[0].value, before.params()[0].value, "{kind:?}: decayed weight moves");
        assert_eq!(s.params()[1].value, before.params()[1].value, "{kind:?}: bias untouched");
        assert_eq!(s.params()[2].value, before.params()[2].value, "{kind:?}: embedding untouched");
    }
}

#[test]
fn big_tensors_update_like_small_ones() {
    // A tensor large enough for the parallel chunked path must get exactly the same values
    // as the same elements held in small tensors updated inline.
    let n = 100_003;
    let vals: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin()).collect();
    let gs: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos() * 0.1).collect();
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::AdamW] {
        let cfg = OptimizerConfig { kind, lr: 0.01, momentum: 0.9, weight_decay: 0.1, ..Default::default() };
        let mut big = ParamStore::new();
        big.add("w", Tensor::new([n, 1], vals.clone()).unwrap());
        let mut small = ParamStore::new();
        for (j, c) in vals.chunks(1000).enumerate() {
            small.add(format!("w{j}"), Tensor::new([c.len(), 1], c.to_vec()).unwrap());
        }
        let mut ob = Optimizer::new(&cfg, &big).unwrap();
        let mut os = Optimizer::new(&cfg, &small).unwrap();
        for _ in 0..3 {
            big.params_mut()[0].grad.data_mut().copy_from_slice(&gs);
            for (p, c) in small.params_mut().iter_mut().zip(gs.chunks(1000)) {
                p.grad.data_mut().copy_from_slice(c);
            }
            ob.step(&mut big, 0.01);
            os.step(&mut small, 0.01);
        }
        let joined: Vec<f32> = small.params().iter().flat_map(|p| p.value.data().to_vec()).collect();
        assert_eq!(big.params()[0].value.data(), &joined[..], "{kind:?}");
    }
}

fn field_of(cfg: OptimizerConfig) -> String {
    match Optimizer::new(&cfg, &store()) {
        Err(Error::Config { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn invalid_settings_name_the_flag() {
    let d = OptimizerConfig::default;
    assert_eq!(field_of(OptimizerConfig { lr: 0.0, ..d() }), "lr");
    assert_eq!(field_of(OptimizerConfig { lr: -1.0, ..d() }), "lr");
    assert_eq!(field_of(OptimizerConfig { lr: f32::NAN, ..d() }), "lr");
    assert_eq!(field_of(OptimizerConfig { lr: f32::INFINITY, ..d() }), "lr");
    assert_eq!(field_of(OptimizerConfig { momentum: 1.5, ..d() }), "momentum");
    assert_eq!(field_of(OptimizerConfig { momentum: -0.1, ..d() }), "momentum");
    assert_eq!(field_of(OptimizerConfig { betas: (1.0, 0.999), ..d() }), "betas");
    assert_eq!(field_of(OptimizerConfig { betas: (0.9, -0.1), ..d() }), "betas");
    assert_eq!(field_of(OptimizerConfig { eps: -1e-8, ..d() }), "eps");
    assert_eq!(field_of(OptimizerConfig { weight_decay: -0.01, ..d() }), "weight-decay");
    assert_eq!(field_of(OptimizerConfig { weight_decay: f32::NAN, ..d() }), "weight-decay");
    assert_eq!(field_of(OptimizerConfig { ema_decay: 1.0, ..d() }), "ema-decay");
    assert_eq!(field_of(OptimizerConfig { ema_decay: -0.5, ..d() }), "ema-decay");
}

#[test]
fn config_serde() {
    let d = OptimizerConfig::default();
    assert_eq!((d.kind, d.lr, d.betas, d.eps, d.weight_decay), (OptimizerKind::AdamW, 1e-3, (0.9, 0.999), 1e-8, 0.01));
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("\"adamw\""), "{json}");
    let back: OptimizerConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    let partial: OptimizerConfig = serde_json::from_str(r#"{"kind": "sgd", "lr": 0.1, "momentum": 0.9}"#).unwrap();
    assert_eq!(partial, OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, ..d });
    assert_eq!(serde_json::from_str::<OptimizerKind>("\"adam\"").unwrap(), OptimizerKind::Adam);
}
