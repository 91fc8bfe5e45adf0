//! `convlm train --time-limit`: the clock ends the run with a final evaluation and
//! checkpoint, each step's learning rate follows the recorded schedule plan (so resume and
//! replay can give it again), a resumed run takes a new budget in all, and bad durations
//! are errors naming the flag.

mod common;

use std::path::Path;
use std::process::Output;

use common::cli::{convlm, stderr};
use convlm::optim::ScheduleConfig;
use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn train(run: &Path, extra: &[&str]) -> Output {
    let names = common::shared("data/names.txt");
    let mut args = vec!["train", "--config", "names-dilated", "--data", names.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"];
    args.extend_from_slice(&["--eval-every", "100", "--set", "train.eval_batches=2", "--set", "schedule.schedule=cosine", "--warmup", "5"]);
    args.extend_from_slice(extra);
    convlm(&args)
}

#[test]
fn the_clock_ends_the_run_after_a_final_evaluation_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = train(&run, &["--time-limit", "2s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = json(&run.join("state.json"));
    let step = state["step"].as_u64().unwrap();
    assert!(step > 0);
    assert_eq!(state["total_steps"].as_u64(), Some(step), "the clock set the end");
    assert_eq!(state["time_limit_s"].as_f64(), Some(2.0));
    assert!(state["train_seconds"].as_f64().unwrap() > 0.0);
    let recs = records(&run);
    let last_eval = recs.iter().rev().find(|r| r.get("val_loss").is_some()).expect("a final evaluation");
    assert_eq!(last_eval["step"].as_u64(), Some(step), "the last step is evaluated");
    let config = json(&run.join("config.json"));
    assert_eq!(config["train"]["time_limit"].as_f64(), Some(2.0));

    // Each step's learning rate is the schedule's over the total in force at that step.
    let plan: Vec<[u64; 2]> = serde_json::from_value(state["schedule_plan"].clone()).unwrap_or_default();
    let schedule: ScheduleConfig = serde_json::from_value(config["schedule"].clone()).unwrap();
    let base = config["optimizer"]["lr"].as_f64().unwrap() as f32;
    for r in recs.iter().filter(|r| r.get("lr").is_some()) {
        let index = r["step"].as_u64().unwrap() - 1;
        let total = plan.iter().rev().find(|[from, _]| *from <= index).map_or(1_000_000_000, |[_, t]| *t);
        let want = schedule.lr_at(base, index, total);
        assert_eq!(r["lr"].as_f64().unwrap() as f32, want, "step {index}");
    }
    assert!(plan.windows(2).all(|w| w[0][0] < w[1][0]), "revisions in step order: {plan:?}");
}

#[test]
fn a_resumed_run_takes_a_new_budget_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(train(&run, &["--time-limit", "1s"]).status.success());
    let first = json(&run.join("state.json"));
    let run_arg = run.to_str().unwrap();
    let again = convlm(&["train", "--resume", "--out", run_arg, "-q"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to do"), "a spent budget has nothing left");
    let more = convlm(&["train", "--resume", "--out", run_arg, "-q", "--time-limit", "3s"]);
    assert!(more.status.success(), "{}", stderr(&more));
    let second = json(&run.join("state.json"));
    assert!(second["step"].as_u64() > first["step"].as_u64());
    assert_eq!(second["time_limit_s"].as_f64(), Some(3.0));
    // --steps turns the clock off.
    let steps = second["step"].as_u64().unwrap() + 3;
    let counted = convlm(&["train", "--resume", "--out", run_arg, "-q", "--steps", &steps.to_string()]);
    assert!(counted.status.success(), "{}", stderr(&counted));
    let third = json(&run.join("state.json"));
    assert_eq!(third["step"].as_u64(), Some(steps));
    assert!(third.get("time_limit_s").is_none());
}

#[test]
fn bad_durations_are_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for bad in ["0", "-3", "10x", "30m1h", "nan"] {
        let out = train(&run, &[&format!("--time-limit={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains("--time-limit"), "{bad}: {}", stderr(&out));
    }
    let out = train(&run, &["--time-limit", "5m", "--steps", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
    let out = train(&run, &["--set", "train.time_limit=\"ten minutes\""]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("time-limit") && stderr(&out).contains("ten minutes"), "{}", stderr(&out));
    assert!(!run.exists(), "no run was started");
}
