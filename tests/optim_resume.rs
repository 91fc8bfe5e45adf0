//! Saving the optimizer state to a safetensors file, loading it into a fresh optimizer and
//! continuing gives bit-identical parameters to an uninterrupted run; bad state files are
//! rejected with messages naming the file and tensor.

use convlm::io::{load_safetensors, save_safetensors};
use convlm::nn::ParamStore;
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::{Error, Tensor};
use std::collections::HashMap;

fn store() -> ParamStore {
    let mut s = ParamStore::new();
    let w: Vec<f32> = (0..40_000).map(|i| ((i as f32) * 0.013).sin()).collect();
    s.add("convs.0.weight", Tensor::new([100, 4, 100], w).unwrap());
    s.add("convs.0.bias", Tensor::new([100], vec![0.01; 100]).unwrap());
    s.add("embedding.weight", Tensor::new([3, 5], (0..15).map(|i| i as f32 * 0.1).collect()).unwrap());
    s
}

fn set_grads(s: &mut ParamStore, step: u64) {
    for (j, p) in s.params_mut().iter_mut().enumerate() {
        for (i, g) in p.grad.data_mut().iter_mut().enumerate() {
            *g = (((i * 7 + j * 3) as f32) * 0.001 + step as f32).cos() * 0.5;
        }
    }
}

fn lr(step: u64) -> f32 {
    0.01 / (1.0 + step as f32)
}

fn configs() -> Vec<OptimizerConfig> {
    vec![
        OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.01, ..Default::default() },
        OptimizerConfig { kind: OptimizerKind::Adam, weight_decay: 0.01, ..Default::default() },
        OptimizerConfig { kind: OptimizerKind::AdamW, weight_decay: 0.1, ..Default::default() },
        OptimizerConfig { kind: OptimizerKind::AdamW, weight_decay: 0.1, ema_decay: 0.9, ..Default::default() },
        OptimizerConfig { kind: OptimizerKind::Sgd, lr: 0.1, ema_decay: 0.5, ..Default::default() },
    ]
}

#[test]
fn save_load_continue_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in configs() {
        let mut a = store();
        let mut oa = Optimizer::new(&cfg, &a).unwrap();
        for step in 0..6 {
            set_grads(&mut a, step);
            oa.step(&mut a, lr(step));
        }

        let mut b = store();
        let mut ob = Optimizer::new(&cfg, &b).unwrap();
        for step in 0..3 {
            set_grads(&mut b, step);
            ob.step(&mut b, lr(step));
        }
        let model = dir.path().join("model.safetensors");
        let state = dir.path().join("optimizer.safetensors");
        save_safetensors(&model, &b.named_values(), None).unwrap();
        let meta = HashMap::from([("step".to_string(), ob.steps_taken().to_string())]);
        save_safetensors(&state, &ob.state_tensors(), Some(meta)).unwrap();
        drop((b, ob));

        let mut c = store();
        let (values, _) = load_safetensors(&model).unwrap();
        c.load_named(values, &model).unwrap();
        let mut oc = Optimizer::new(&cfg, &c).unwrap();
        let (tensors, meta) = load_safetensors(&state).unwrap();
        let steps: u64 = meta["step"].parse().unwrap();
        oc.load_state(tensors, steps, &state).unwrap();
        assert_eq!(oc.steps_taken(), 3);
        for step in 3..6 {
            set_grads(&mut c, step);
            oc.step(&mut c, lr(step));
        }
        for (x, y) in a.params().iter().zip(c.params()) {
            let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x.value), bits(&y.value), "{:?}: {}", cfg.kind, x.name);
        }
        assert_eq!(oa.state_tensors(), oc.state_tensors(), "{:?}", cfg.kind);
    }
}

#[test]
fn state_tensor_names() {
    let s = store();
    let names = |kind, momentum| {
        let cfg = OptimizerConfig { kind, momentum, ..Default::default() };
        Optimizer::new(&cfg, &s).unwrap().state_tensors().into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    assert_eq!(
        names(OptimizerKind::AdamW, 0.0),
        [
            "exp_avg.convs.0.weight",
            "exp_avg_sq.convs.0.weight",
            "exp_avg.convs.0.bias",
            "exp_avg_sq.convs.0.bias",
            "exp_avg.embedding.weight",
            "exp_avg_sq.embedding.weight"
        ]
    );
    assert_eq!(names(OptimizerKind::Sgd, 0.9), ["momentum_buffer.convs.0.weight", "momentum_buffer.convs.0.bias", "momentum_buffer.embedding.weight"]);
    assert!(names(OptimizerKind::Sgd, 0.0).is_empty());
    // The averages follow every moment, one per parameter.
    let cfg = OptimizerConfig { kind: OptimizerKind::Sgd, ema_decay: 0.99, ..Default::default() };
    let names: Vec<_> = Optimizer::new(&cfg, &s).unwrap().state_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["ema.convs.0.weight", "ema.convs.0.bias", "ema.embedding.weight"]);
}

#[test]
fn a_state_without_the_average_it_needs_is_rejected() {
    let s = store();
    let plain = OptimizerConfig::default();
    let averaging = OptimizerConfig { ema_decay: 0.99, ..plain.clone() };
    let src = std::path::Path::new("/runs/x/optimizer.safetensors");
    let without = Optimizer::new(&plain, &s).unwrap().state_tensors();
    let mut opt = Optimizer::new(&averaging, &s).unwrap();
    let msg = bad_file_msg(opt.load_state(without.clone(), 3, src));
    assert!(msg.contains("/runs/x/optimizer.safetensors") && msg.contains("missing") && msg.contains("ema.convs.0.weight"), "{msg}");
    // And a state with averages does not load into an optimizer that keeps none.
    let with = opt.state_tensors();
    let msg = bad_file_msg(Optimizer::new(&plain, &s).unwrap().load_state(with, 3, src));
    assert!(msg.contains("ema.convs.0.weight") && msg.contains("without a weight average"), "{msg}");
}

fn bad_file_msg(r: convlm::Result<()>) -> String {
    match r {
        Err(e @ Error::BadFile { .. }) => e.to_string(),
        other => panic!("expected BadFile, got {other:?}"),
    }
}

#[test]
fn bad_state_is_rejected_and_leaves_optimizer_unchanged() {
    let s = store();
    let cfg = OptimizerConfig::default();
    let mut opt = Optimizer::new(&cfg, &s).unwrap();
    let good = opt.state_tensors();
    let src = std::path::Path::new("/runs/x/optimizer.safetensors");

    let mut missing = good.clone();
    missing.remove(1);
    let msg = bad_file_msg(opt.load_state(missing, 7, src));
    assert!(msg.contains("/runs/x/optimizer.safetensors") && msg.contains("exp_avg_sq.convs.0.weight"), "{msg}");

    let mut wrong_shape = good.clone();
    wrong_shape[2].1 = Tensor::zeros([101]);
    let msg = bad_file_msg(opt.load_state(wrong_shape, 7, src));
    assert!(msg.contains("exp_avg.convs.0.bias") && msg.contains("[101]"), "{msg}");

    let mut extra = good.clone();
    extra.push(("momentum_buffer.convs.0.bias".into(), Tensor::zeros([100])));
    let msg = bad_file_msg(opt.load_state(extra, 7, src));
    assert!(msg.contains("momentum_buffer.convs.0.bias"), "{msg}");

    let mut twice = good.clone();
    twice.push(good[0].clone());
    assert!(bad_file_msg(opt.load_state(twice, 7, src)).contains("twice"));

    assert_eq!(opt.steps_taken(), 0);
    assert_eq!(opt.state_tensors(), good);
}
