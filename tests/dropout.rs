//! Dropout (config `dropout` of every family): it changes the training loss, draws the same
//! masks for the same seed, is off in evaluation and in cached generation, is saved only
//! when used, and an interrupted run with dropout resumes to the uninterrupted one exactly.

mod common;

use convlm::models::{Model, ModelConfig};
use convlm::run::{resume, train, CancelToken, ResumeOptions, RunConfig, RunDir, TrainEvent, TrainOptions};
use convlm::tensor::Graph;
use convlm::Error;
use serde_json::{json, Value};

/// A small model of every family, with `dropout` set, and its input shape.
fn families(dropout: f32) -> Vec<(ModelConfig, Vec<usize>)> {
    let configs = [
        (json!({"family": "mlp", "block_size": 3, "n_embd": 4, "n_hidden": 16}), vec![2, 6]),
        (json!({"family": "causal-cnn", "n_embd": 8, "channels": 12, "kernel_size": 3, "n_layers": 2}), vec![2, 10]),
        (json!({"family": "dilated", "n_embd": 8, "channels": 12, "kernel_size": 2, "dilations": [1, 2]}), vec![2, 10]),
        (json!({"family": "hierarchical", "block_size": 8, "n_embd": 6, "n_hidden": 16}), vec![2, 8]),
        (json!({"family": "wavenet", "residual_channels": 8, "dilation_channels": 8, "skip_channels": 12, "n_layers": 3}), vec![2, 10]),
        (json!({"family": "gated-cnn", "n_embd": 8, "channels": 8, "kernel_size": 3, "n_blocks": 2, "layers_per_block": 1}), vec![2, 10]),
        (json!({"family": "pixelcnn", "n_embd": 4, "channels": 8, "kernel_size": 3, "n_layers": 2}), vec![2, 4, 5]),
        (json!({"family": "hyena", "d_model": 8, "n_layers": 2, "max_len": 16, "filter_width": 8, "filter_inner": 1}), vec![2, 10]),
    ];
    configs
        .into_iter()
        .map(|(mut v, shape)| {
            v["dropout"] = json!(dropout);
            (ModelConfig::from_value(v).expect("valid config"), shape)
        })
        .collect()
}

const VOCAB: usize = 7;

fn ids_and_targets(shape: &[usize]) -> (Vec<u32>, Vec<i64>) {
    let n: usize = shape.iter().product();
    ((0..n).map(|i| (i * 5 % VOCAB) as u32).collect(), (0..n).map(|i| ((i * 3 + 1) % VOCAB) as i64).collect())
}

/// The mean loss of `model` on the fixed batch, on a training or evaluation graph.
fn loss(model: &mut Model, shape: &[usize], training: bool, seed: u64) -> f32 {
    let (ids, targets) = ids_and_targets(shape);
    let mut g = Graph::new(training);
    let l = model.loss(&mut g, &ids, shape, &targets, seed).expect("loss");
    g.value(l).data()[0]
}

#[test]
fn dropout_changes_training_only_and_is_seeded() {
    for ((with, shape), (without, _)) in families(0.5).into_iter().zip(families(0.0)) {
        let family = with.family().to_string();
        let mut a = Model::new(&with, VOCAB, 3).unwrap();
        let mut b = Model::new(&without, VOCAB, 3).unwrap();
        // Dropout has no parameters: the same seed gives the same weights.
        assert_eq!(a.params().numel(), b.params().numel(), "{family}");
        let eval = loss(&mut b, &shape, false, 0);
        assert_eq!(loss(&mut a, &shape, false, 0), eval, "{family}: dropout must be off in evaluation");
        assert_eq!(loss(&mut a, &shape, false, 9), eval, "{family}: the seed must not matter in evaluation");

        let dropped = loss(&mut a, &shape, true, 1);
        let plain = loss(&mut b, &shape, true, 1);
        assert!(dropped.is_finite(), "{family}");
        assert_ne!(dropped, plain, "{family}: dropout 0.5 left the training loss unchanged");
        // BatchNorm (hierarchical) updates running statistics on training graphs: compare
        // masks on fresh models.
        let mut a2 = Model::new(&with, VOCAB, 3).unwrap();
        let mut a3 = Model::new(&with, VOCAB, 3).unwrap();
        assert_eq!(loss(&mut a2, &shape, true, 1), dropped, "{family}: the same seed must draw the same masks");
        assert_ne!(loss(&mut a3, &shape, true, 2), dropped, "{family}: another seed must draw other masks");
    }
}

#[test]
fn cached_generation_ignores_dropout() {
    for ((with, shape), (without, _)) in families(0.5).into_iter().zip(families(0.0)) {
        let a = Model::new(&with, VOCAB, 5).unwrap();
        let b = Model::new(&without, VOCAB, 5).unwrap();
        if !a.can_step() {
            continue;
        }
        let (mut sa, mut sb) = (a.new_state(shape[0]), b.new_state(shape[0]));
        for t in 0..4u32 {
            let ids = vec![t % VOCAB as u32; shape[0]];
            let (la, lb) = (a.step(&mut sa, &ids).unwrap(), b.step(&mut sb, &ids).unwrap());
            assert_eq!(la.data(), lb.data(), "{}: step {t}", with.family());
        }
    }
}

#[test]
fn dropout_is_validated_and_saved_only_when_used() {
    for p in [1.0, 1.5, -0.1] {
        let err = ModelConfig::from_value(json!({"family": "dilated", "dropout": p})).and_then(|c| Model::new(&c, VOCAB, 0).map_err(|e| e.to_string()));
        let msg = err.err().unwrap_or_else(|| panic!("dropout {p} was accepted"));
        assert!(msg.contains("dropout"), "dropout {p}: {msg}");
    }
    for (config, _) in families(0.0) {
        let saved = serde_json::to_value(&config).unwrap();
        assert!(saved.get("dropout").is_none(), "{}: an unused dropout is saved: {saved}", config.family());
    }
    for (config, _) in families(0.25) {
        let saved = serde_json::to_value(&config).unwrap();
        assert_eq!(saved["dropout"], json!(0.25), "{}", config.family());
    }
}

fn config(data: &std::path::Path, dropout: f32) -> RunConfig {
    common::small_run(data, dropout)
}

fn step_losses(run: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter_map(|v| v.get("loss").and_then(Value::as_f64)).collect()
}

#[test]
fn an_interrupted_run_with_dropout_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::shared("data/names.txt");
    let opts = TrainOptions::default();

    let whole = RunDir::new(dir.path().join("whole"));
    train(&config(&data, 0.3), &whole, &opts, &mut |_| {}).unwrap();

    let cut = RunDir::new(dir.path().join("cut"));
    let cancel = CancelToken::new();
    let cut_opts = TrainOptions { cancel: cancel.clone(), ..TrainOptions::default() };
    let err = train(&config(&data, 0.3), &cut, &cut_opts, &mut |e| {
        if let TrainEvent::Step { step: 5, .. } = e {
            cancel.cancel();
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Interrupted { .. }), "{err}");
    resume(&cut, &ResumeOptions::default(), &opts, &mut |_| {}).unwrap();

    let (a, b) = (step_losses(&dir.path().join("whole")), step_losses(&dir.path().join("cut")));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "the resumed run's step losses differ");
    let weights = |run: &str| std::fs::read(dir.path().join(run).join("model.safetensors")).unwrap();
    assert_eq!(weights("whole"), weights("cut"), "the resumed run's weights differ");

    // Without dropout the same run trains on other numbers: dropout was on in training.
    let plain = RunDir::new(dir.path().join("plain"));
    train(&config(&data, 0.0), &plain, &opts, &mut |_| {}).unwrap();
    assert_ne!(step_losses(&dir.path().join("plain")), a);
}
