//! A run that keeps a moving average of its weights (`optimizer.ema_decay`): its steps are
//! the plain run's, its evaluations, best.safetensors and model.safetensors are the average,
//! its checkpoint holds the live weights with the average, and it resumes exactly.

mod common;

use convlm::data::Split;
use convlm::io::load_safetensors;
use convlm::run::{train, ResumeOptions, RunConfig, RunDir, TrainOptions, Trainer};
use convlm::Tensor;
use serde_json::Value;

/// One evaluation, at the last step, over the whole validation split.
fn config(data: &std::path::Path, ema_decay: f32) -> RunConfig {
    let mut cfg = common::small_run(data, 0.0);
    cfg.train.eval_every = 12;
    cfg.train.eval_batches = 0;
    cfg.optimizer.lr = 1e-2;
    cfg.optimizer.ema_decay = ema_decay;
    cfg
}

fn records(run: &RunDir) -> Vec<Value> {
    let text = std::fs::read_to_string(run.file("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn logged(run: &RunDir, key: &str) -> Vec<f64> {
    records(run).iter().filter_map(|r| r.get(key)?.as_f64()).collect()
}

fn tensors(path: &std::path::Path) -> Vec<(String, Tensor)> {
    let (mut t, _) = load_safetensors(path).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// The checkpoint's tensors named `prefix.<name>`, renamed `<name>`.
fn with_prefix(run: &RunDir, prefix: &str) -> Vec<(String, Tensor)> {
    let mut t: Vec<_> = tensors(&run.file("optimizer.safetensors")).into_iter().filter_map(|(n, t)| Some((n.strip_prefix(prefix)?.to_string(), t))).collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn the_run_steps_as_without_the_average_and_evaluates_and_exports_the_average() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::shared("data/names.txt");
    let plain = RunDir::new(dir.path().join("plain"));
    train(&config(&data, 0.0), &plain, &TrainOptions::default(), &mut |_| {}).unwrap();
    let averaged = RunDir::new(dir.path().join("averaged"));
    train(&config(&data, 0.9), &averaged, &TrainOptions::default(), &mut |_| {}).unwrap();

    // The same steps: the same training losses and the same live weights.
    assert_eq!(logged(&plain, "loss"), logged(&averaged, "loss"));
    assert_eq!(with_prefix(&plain, "model."), with_prefix(&averaged, "model."));
    assert!(with_prefix(&plain, "ema.").is_empty());

    // model.safetensors and best.safetensors (the one evaluation, at the last step) hold the
    // average, not the live weights.
    let average = with_prefix(&averaged, "ema.");
    assert!(!average.is_empty());
    let exported = tensors(&averaged.file("model.safetensors"));
    let params: Vec<_> = exported.iter().filter(|(n, _)| average.iter().any(|(a, _)| a == n)).cloned().collect();
    assert_eq!(params, average, "model.safetensors is the average");
    assert_eq!(tensors(&averaged.file("best.safetensors")), exported);
    assert_ne!(average, with_prefix(&averaged, "model.").into_iter().filter(|(n, _)| average.iter().any(|(a, _)| a == n)).collect::<Vec<_>>());

    // The logged validation loss is the average's; the plain run's is the live weights'.
    let (val_plain, val_avg) = (logged(&plain, "val_loss"), logged(&averaged, "val_loss"));
    assert_eq!((val_plain.len(), val_avg.len()), (1, 1));
    assert_ne!(val_plain, val_avg);
    let mut t = Trainer::resume(&averaged, &ResumeOptions::default(), &TrainOptions::default(), &mut |_| {}).unwrap();
    let now = t.evaluate(Split::Val).unwrap().loss;
    assert!((now - val_avg[0]).abs() <= 1e-9 * now.abs(), "the trainer evaluates the average: {now} vs logged {}", val_avg[0]);
}

#[test]
fn a_run_with_an_average_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::shared("data/names.txt"), 0.95);
    let whole = RunDir::new(dir.path().join("whole"));
    train(&cfg, &whole, &TrainOptions::default(), &mut |_| {}).unwrap();

    let saved = RunDir::new(dir.path().join("saved"));
    let mut t = Trainer::new(&cfg, &saved, &TrainOptions::default(), &mut |_| {}).unwrap();
    for _ in 0..5 {
        t.step(&mut |_| {}).unwrap();
        // An evaluation between steps swaps the average in and out: nothing changes.
        t.evaluate(Split::Val).unwrap();
    }
    t.save().unwrap();
    drop(t);
    let mut t = Trainer::resume(&saved, &ResumeOptions::default(), &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(t.steps_done(), 5);
    while t.step(&mut |_| {}).unwrap().is_some() {}
    t.finish(&mut |_| {}).unwrap();
    drop(t);
    assert_eq!(logged(&whole, "loss"), logged(&saved, "loss"));
    assert_eq!(logged(&whole, "val_loss"), logged(&saved, "val_loss"));
    assert_eq!(tensors(&whole.file("optimizer.safetensors")), tensors(&saved.file("optimizer.safetensors")));
    assert_eq!(tensors(&whole.file("model.safetensors")), tensors(&saved.file("model.safetensors")));
}
