//! Every model family against ../shared/golden/models/<family>.json (PyTorch, f64): logits,
//! loss and the gradient of every parameter, in training mode.

mod common;

use common::{assert_close, ints, model_config, named, read_json, shared, tensor};
use convlm::models::{Model, FAMILIES};
use convlm::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use convlm::tensor::Graph;
use serde_json::Value;

/// Tolerances stated in reference/models_golden.py for an f32 implementation.
const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-3;

fn golden_forward_backward(family: &str) {
    let path = shared(&format!("golden/models/{family}.json"));
    let doc = read_json(&path);
    let (config, vocab) = model_config(&doc);
    let mut model = Model::new(&config, vocab, 0).expect("model builds");
    // serde_json sorts object keys, so compare the name sets (and shapes through loading).
    let mut names: Vec<String> = model.params().params().iter().map(|p| p.name.clone()).collect();
    names.sort();
    let golden_names: Vec<String> = doc["params"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, golden_names, "{family}: parameter names differ from PyTorch");
    // `params` holds parameters only; buffers keep their fresh values (mean 0, var 1).
    model.params_mut().load_named(named(&doc["params"]), &path).expect("golden params load");

    let (shape, x) = ints(&doc["x"]);
    let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
    let (_, targets) = ints(&doc["targets"]);
    let mut g = Graph::new(true);
    let logits = model.forward(&mut g, &ids, &shape).expect("forward");
    assert_close(&format!("{family} logits"), g.value(logits).data(), tensor(&doc["logits"]).data(), ATOL, RTOL);
    let loss = g.cross_entropy(logits, &targets).expect("loss");
    let want_loss = doc["loss"].as_f64().unwrap() as f32;
    assert_close(&format!("{family} loss"), g.value(loss).data(), &[want_loss], ATOL, RTOL);
    g.backward(loss).expect("backward");
    model.params_mut().accumulate_grads(&g);
    for (name, want) in named(&doc["grads"]) {
        let p = model.params().find(&name).unwrap_or_else(|| panic!("{family}: no parameter {name}"));
        assert_close(&format!("{family} grad {name}"), p.grad.data(), want.data(), ATOL, RTOL);
    }
    // Continue with this model: the forward above already updated the BatchNorm running
    // statistics once, as it did in PyTorch.
    golden_adamw(family, &doc, model);
}

/// The file's 5 AdamW steps (decay only on ndim >= 2 non-embedding weights) from the initial
/// parameters: the loss before each step, the final parameters and, for hierarchical, the
/// running statistics and eval-mode logits.
fn golden_adamw(family: &str, doc: &Value, mut model: Model) {
    let a = &doc["adamw"];
    let betas = a["betas"].as_array().unwrap();
    let cfg = OptimizerConfig {
        kind: OptimizerKind::AdamW,
        lr: a["lr"].as_f64().unwrap() as f32,
        momentum: 0.0,
        betas: (betas[0].as_f64().unwrap() as f32, betas[1].as_f64().unwrap() as f32),
        eps: a["eps"].as_f64().unwrap() as f32,
        weight_decay: a["weight_decay"].as_f64().unwrap() as f32,
        ema_decay: 0.0,
    };
    let mut opt = Optimizer::new(&cfg, model.params()).unwrap();
    let (shape, x) = ints(&doc["x"]);
    let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
    let (_, targets) = ints(&doc["targets"]);
    let want: Vec<f32> = doc["losses"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    for (step, &want_loss) in want.iter().enumerate() {
        model.params_mut().zero_grad();
        let mut g = Graph::new(true);
        let logits = model.forward(&mut g, &ids, &shape).unwrap();
        let loss = g.cross_entropy(logits, &targets).unwrap();
        assert_close(&format!("{family} loss before AdamW step {step}"), g.value(loss).data(), &[want_loss], 1e-3, 1e-3);
        g.backward(loss).unwrap();
        model.params_mut().accumulate_grads(&g);
        opt.step(model.params_mut(), cfg.lr);
    }
    for (name, want) in named(&doc["final_params"]) {
        let p = model.params().find(&name).unwrap();
        assert_close(&format!("{family} final {name}"), p.value.data(), want.data(), ATOL, RTOL);
    }
    if let Some(buffers) = doc.get("final_buffers") {
        let mine = model.buffers().named();
        let golden = named(buffers);
        let compared = golden.iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")).count();
        assert_eq!(compared, mine.len(), "{family}: buffer count");
        for (name, want) in golden.iter().filter(|(n, _)| !n.ends_with("num_batches_tracked")) {
            let (_, got) = mine.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no buffer {name}"));
            assert_close(&format!("{family} buffer {name}"), got.data(), want.data(), ATOL, RTOL);
        }
        let mut g = Graph::new(false);
        let logits = model.forward(&mut g, &ids, &shape).unwrap();
        assert_close(&format!("{family} eval logits"), g.value(logits).data(), tensor(&doc["eval_logits"]).data(), ATOL, RTOL);
    }
}

#[test]
fn mlp() {
    golden_forward_backward("mlp");
}
#[test]
fn causal_cnn() {
    golden_forward_backward("causal-cnn");
}
#[test]
fn dilated() {
    golden_forward_backward("dilated");
}
#[test]
fn hierarchical() {
    golden_forward_backward("hierarchical");
}
#[test]
fn wavenet() {
    golden_forward_backward("wavenet");
}
#[test]
fn gated_cnn() {
    golden_forward_backward("gated-cnn");
}
#[test]
fn pixelcnn() {
    golden_forward_backward("pixelcnn");
}
#[test]
fn hyena() {
    golden_forward_backward("hyena");
}

#[test]
fn every_family_has_a_golden_file() {
    for f in FAMILIES {
        assert!(shared(&format!("golden/models/{f}.json")).exists(), "missing golden file for {f}");
    }
}

/// `Model::loss` (the head fused with the loss, as training runs it) against the golden loss
/// and every golden gradient, in training and eval mode (eval graphs recompute the head's
/// gradient state in backward).
fn golden_fused_loss(family: &str) {
    let path = shared(&format!("golden/models/{family}.json"));
    let doc = read_json(&path);
    let (config, vocab) = model_config(&doc);
    let (shape, x) = ints(&doc["x"]);
    let ids: Vec<u32> = x.iter().map(|&v| v as u32).collect();
    let (_, targets) = ints(&doc["targets"]);
    for training in [true, false] {
        let mut model = Model::new(&config, vocab, 0).expect("model builds");
        model.params_mut().load_named(named(&doc["params"]), &path).expect("golden params load");
        let mut g = Graph::new(training);
        let loss = model.loss(&mut g, &ids, &shape, &targets, 0).expect("fused loss");
        if training {
            let want_loss = doc["loss"].as_f64().unwrap() as f32;
            assert_close(&format!("{family} fused loss"), g.value(loss).data(), &[want_loss], ATOL, RTOL);
        }
        g.backward(loss).expect("backward");
        model.params_mut().accumulate_grads(&g);
        if training || doc.get("final_buffers").is_none() {
            // (Eval-mode BatchNorm uses running statistics: other gradients than the file's.)
            for (name, want) in named(&doc["grads"]) {
                let p = model.params().find(&name).unwrap();
                assert_close(&format!("{family} fused grad {name} (training {training})"), p.grad.data(), want.data(), ATOL, RTOL);
            }
        }
    }
}

#[test]
fn the_fused_head_matches_every_golden_family() {
    for f in FAMILIES {
        golden_fused_loss(f);
    }
}
