//! `run::Trainer`, the run taken one step at a time: stepped to the end it is `train`
//! (same records, same weights), evaluating or saving between steps changes nothing, a save
//! resumes exactly, a cancel saves and lets the trainer step on, and a finished run takes no
//! more steps.

mod common;

use convlm::data::Split;
use convlm::run::{train, CancelToken, ResumeOptions, RunConfig, RunDir, TrainEvent, TrainOptions, Trainer};
use convlm::Error;
use serde_json::{json, Value};

fn config(data: &std::path::Path) -> RunConfig {
    let mut cfg = common::small_run(data, 0.0);
    cfg.train.eval_every = 5;
    cfg
}

/// Every record of a run's metrics.jsonl without its timings (which differ run to run).
fn records(run: &RunDir) -> Vec<Value> {
    let text = std::fs::read_to_string(run.file("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            for timing in ["step_ms", "tokens_per_s"] {
                v.as_object_mut().unwrap().remove(timing);
            }
            v
        })
        .collect()
}

fn weights(run: &RunDir) -> Vec<u8> {
    std::fs::read(run.file("model.safetensors")).unwrap()
}

#[test]
fn a_trainer_stepped_to_the_end_is_train() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::shared("data/names.txt"));
    let whole = RunDir::new(dir.path().join("whole"));
    let summary = train(&cfg, &whole, &TrainOptions::default(), &mut |_| {}).unwrap();

    let stepped = RunDir::new(dir.path().join("stepped"));
    let mut t = Trainer::new(&cfg, &stepped, &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!((t.steps_done(), t.total_steps(), t.is_done()), (0, 12, false));
    let mut reports = Vec::new();
    while let Some(r) = t.step(&mut |_| {}).unwrap() {
        // Questions asked between steps change nothing the run does.
        let val = t.evaluate(Split::Val).unwrap();
        assert!(val.loss.is_finite() && val.tokens > 0, "{val:?}");
        reports.push(r);
    }
    assert!(t.is_done());
    assert_eq!(t.step(&mut |_| {}).unwrap(), None, "a finished run takes no more steps");
    let stepped_summary = t.finish(&mut |_| {}).unwrap();
    drop(t);

    assert_eq!(reports.iter().map(|r| r.step).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    // Each report is the step's record in metrics.jsonl, the evaluation's loss beside it.
    let logged = records(&stepped);
    let steps: Vec<&Value> = logged.iter().filter(|v| v.get("loss").is_some()).collect();
    assert_eq!(reports.len(), steps.len());
    for (r, logged) in reports.iter().zip(&steps) {
        // Read back as the file is (serde_json's parser rounds the last digit).
        let reread: Value = serde_json::from_str(&r.record.to_string()).unwrap();
        for key in ["step", "loss", "lr", "grad_norm"] {
            assert_eq!(reread[key], logged[key], "{key} of step {}", r.step);
        }
        assert_eq!(r.record["step"], json!(r.step));
        assert_eq!(r.loss, r.record["loss"].as_f64().unwrap());
    }
    let evals: Vec<(u64, f64)> = logged.iter().filter_map(|v| Some((v["step"].as_u64()?, v.get("val_loss")?.as_f64()?))).collect();
    let reported: Vec<(u64, f64)> = reports.iter().filter_map(|r| Some((r.step, r.val_loss?))).collect();
    assert_eq!(reported.len(), evals.len());
    for ((step, got), (logged_step, logged)) in reported.iter().zip(&evals) {
        assert_eq!(step, logged_step);
        assert!((got - logged).abs() <= 1e-12 * logged.abs(), "val_loss of step {step}: {got} reported, {logged} logged");
    }
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), [5, 10, 12]);

    assert_eq!(records(&whole), logged, "the stepped run's metrics differ from train's");
    assert_eq!(weights(&whole), weights(&stepped), "the stepped run's weights differ from train's");
    assert_eq!((stepped_summary.steps, stepped_summary.final_train_loss), (summary.steps, summary.final_train_loss));
    assert_eq!(stepped_summary.best_val_loss, summary.best_val_loss);
    assert!(stepped.file("loss.svg").is_file(), "finish draws the loss plot");
}

#[test]
fn a_save_between_checkpoints_resumes_exactly_and_a_cancel_lets_the_trainer_step_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::shared("data/names.txt"));
    let whole = RunDir::new(dir.path().join("whole"));
    train(&cfg, &whole, &TrainOptions::default(), &mut |_| {}).unwrap();

    // Saved at step 3 (no checkpoint of its own there), dropped, resumed.
    let saved = RunDir::new(dir.path().join("saved"));
    let mut t = Trainer::new(&cfg, &saved, &TrainOptions::default(), &mut |_| {}).unwrap();
    for _ in 0..3 {
        t.step(&mut |_| {}).unwrap();
    }
    t.save().unwrap();
    // Steps after the save are lost with the trainer, as a kill would lose them.
    t.step(&mut |_| {}).unwrap();
    drop(t);
    let mut t = Trainer::resume(&saved, &ResumeOptions::default(), &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(t.steps_done(), 3);
    while t.step(&mut |_| {}).unwrap().is_some() {}
    t.finish(&mut |_| {}).unwrap();
    drop(t);
    assert_eq!(records(&whole), records(&saved));
    assert_eq!(weights(&whole), weights(&saved));

    // A cancel saves the checkpoint of the steps taken; the same trainer then steps on.
    let cut = RunDir::new(dir.path().join("cut"));
    let cancel = CancelToken::new();
    let opts = TrainOptions { cancel: cancel.clone(), ..TrainOptions::default() };
    let mut t = Trainer::new(&cfg, &cut, &opts, &mut |_| {}).unwrap();
    let on_step = cancel.clone();
    let mut cancel_at_7 = move |e: TrainEvent<'_>| {
        if let TrainEvent::Step { step: 7, .. } = e {
            on_step.cancel();
        }
    };
    let err = loop {
        match t.step(&mut cancel_at_7) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the run ended without being interrupted"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Interrupted { step: 7 }), "{err}");
    assert!(!cancel.is_cancelled(), "the handled cancel is cleared");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(cut.file("state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], json!(7), "the interrupt saved a checkpoint at step 7");
    while t.step(&mut |_| {}).unwrap().is_some() {}
    t.finish(&mut |_| {}).unwrap();
    drop(t);
    assert_eq!(records(&whole), records(&cut));
    assert_eq!(weights(&whole), weights(&cut));
}

#[test]
fn a_trainer_holds_its_run_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::shared("data/names.txt"));
    let run = RunDir::new(dir.path().join("run"));
    let mut t = Trainer::new(&cfg, &run, &TrainOptions::default(), &mut |_| {}).unwrap();
    t.step(&mut |_| {}).unwrap();
    t.save().unwrap();
    let err = Trainer::resume(&run, &ResumeOptions::default(), &TrainOptions::default(), &mut |_| {}).err().expect("a second trainer on a locked run");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(t);
    let t = Trainer::resume(&run, &ResumeOptions::default(), &TrainOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(t.steps_done(), 1);
}
