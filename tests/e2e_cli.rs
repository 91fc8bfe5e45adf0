//! End to end through the `convlm` binary on ../shared/data/names.txt: train a small model
//! for a few hundred steps, check the validation loss fell below a stated bound, sample
//! deterministically, evaluate, resume, and check the files of the run directory.

mod common;

use common::cli::{stdout, succeeds as convlm};

use std::path::Path;
use std::process::Command;

fn val_losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter_map(|v| v.get("val_loss").and_then(|x| x.as_f64())).collect()
}

#[test]
fn train_sample_eval_resume_on_names() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("names");
    let names = common::shared("data/names.txt");
    let run_s = run.to_str().unwrap();
    let common_args = ["--data", names.to_str().unwrap(), "--out", run_s, "--eval-every", "100", "--batch-size", "32", "--seed", "7", "-q"];
    let mut args = vec!["train", "--steps", "300"];
    args.extend(common_args);
    let out = convlm(&args);
    assert!(stdout(&out).contains("trained 300 steps"), "{}", stdout(&out));
    for f in ["config.json", "tokenizer.json", "model.safetensors", "best.safetensors", "optimizer.safetensors", "state.json", "metrics.jsonl"] {
        assert!(run.join(f).is_file(), "run directory lacks {f}");
    }
    // A uniform guess over 30 tokens is ln 30 = 3.40 nats; 300 steps of the default dilated
    // CNN reach about 2.4 on names.
    let vals = val_losses(&run);
    assert_eq!(vals.len(), 3);
    assert!(vals[2] < 2.6, "validation loss {vals:?} did not fall below 2.6");
    assert!(vals[2] < vals[0], "validation loss did not improve: {vals:?}");

    // Same seed, same samples; samples are marked against the splits.
    let a = stdout(&convlm(&["sample", "--run", run_s, "-n", "8", "--seed", "11"]));
    let b = stdout(&convlm(&["sample", "--run", run_s, "-n", "8", "--seed", "11"]));
    let c = stdout(&convlm(&["sample", "--run", run_s, "-n", "8", "--seed", "12"]));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.lines().count(), 8);
    assert!(a.lines().all(|l| l.ends_with("new") || l.ends_with("in-train") || l.ends_with("in-test")), "{a}");

    let e = stdout(&convlm(&["eval", "--run", run_s, "--split", "test"]));
    assert!(e.starts_with("split test: loss "), "{e}");
    let loss: f64 = e.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(loss < 2.6 && loss > 1.0, "test loss {loss}");

    // Resume to 400 steps: the log continues from step 300 without gaps or repeats.
    let mut args = vec!["train", "--resume", "--steps", "400"];
    args.extend(common_args);
    let out = convlm(&args);
    assert!(stdout(&out).contains("trained 400 steps"), "{}", stdout(&out));
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=400).collect::<Vec<_>>());
}

#[test]
fn starting_over_an_existing_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let run_s = run.to_str().unwrap();
    convlm(&["train", "--steps", "5", "--eval-every", "5", "--out", run_s, "-q"]);
    let out = Command::new(env!("CARGO_BIN_EXE_convlm")).args(["train", "--steps", "5", "--out", run_s, "-q"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a run: pass --resume"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn shape_prints_the_formula_and_result() {
    let o = stdout(&convlm(&["shape", "--length", "10", "--kernel", "3", "--stride", "4", "--padding", "1", "--dilation", "2"]));
    assert!(o.trim_end().ends_with("= 2"), "{o}");
    let o = stdout(&convlm(&["shape", "--length", "5", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "--output-padding", "1"]));
    assert!(o.trim_end().ends_with("= 10"), "{o}");
    let o = stdout(&convlm(&["shape", "--length", "8", "--kernel", "3", "--padding", "2,0"]));
    assert!(o.trim_end().ends_with("= 8"), "{o}");
}

#[test]
fn bad_flags_name_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_convlm")).args(["train", "--steps", "5", "--lr=-1", "--out", "/nonexistent/x", "-q"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lr"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_convlm")).args(["train", "--model", "transformer"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown family `transformer`"));
}
