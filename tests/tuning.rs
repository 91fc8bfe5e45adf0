//! Kernel choices measured on the CPU (`tensor::tune`): cached per CPU model, recorded in
//! each run's state, and a resume computes with the run's recorded choices, not with
//! whatever the cache says now.

mod common;

use std::path::Path;

use common::cli::{command, s, text, train_args};
use serde_json::Value;

fn run_with_cache(cache: &Path, args: &[String]) {
    let out = command().args(args).env("CONVLM_CACHE", cache).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
}

fn recorded(run: &Path) -> Value {
    let state: Value = serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    state["tuning"].clone()
}

#[test]
fn a_run_records_the_cached_choices_and_resumes_with_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let names = common::shared("data/names.txt");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let extra = "--steps 4 --eval-every 2 --set train.eval_batches=1 --set train.samples=0";
    run_with_cache(&cache, &train_args(&names, &first, extra));

    // The measurement was cached under the CPU's model name, and the run recorded it.
    let files: Vec<_> = std::fs::read_dir(cache.join("cpu-tuning")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let cached: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(cached["cpu"].as_str(), Some(convlm::tensor::cpu::model_name().as_str()));
    let tuning = recorded(&first);
    assert_eq!(tuning, cached["tuning"]);
    assert!(tuning["long_conv_fft_min_len"].as_u64().is_some_and(|n| n > 0), "{tuning}");
    assert!(matches!(tuning["fp32_gemm"].as_str(), Some("sgemm" | "crate" | "avx512")), "{tuning}");

    // Another choice in the cache: a new run takes it, the first run's resume keeps its own.
    let mut changed = cached.clone();
    changed["tuning"]["long_conv_fft_min_len"] = Value::from(tuning["long_conv_fft_min_len"].as_u64().unwrap() + 1000);
    std::fs::write(&files[0], serde_json::to_vec(&changed).unwrap()).unwrap();
    run_with_cache(&cache, &train_args(&names, &second, extra));
    assert_eq!(recorded(&second), changed["tuning"]);
    run_with_cache(&cache, &["train", "--resume", "--out", s(&first), "--steps", "6", "-q"].map(String::from));
    assert_eq!(recorded(&first), tuning, "the resume took the cache's choices");

    // A cache measured among older candidates (no `candidates` field) is measured again.
    let mut old = changed.clone();
    old.as_object_mut().unwrap().remove("candidates");
    std::fs::write(&files[0], serde_json::to_vec(&old).unwrap()).unwrap();
    let third = dir.path().join("third");
    run_with_cache(&cache, &train_args(&names, &third, extra));
    // (Measured: a crossover of at most 512 steps, never the edited one past 1000.)
    assert_ne!(recorded(&third), changed["tuning"], "an old cache's choices were taken, not measured again");
    let remeasured: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert!(remeasured["candidates"].as_u64().is_some_and(|v| v > 0), "{remeasured}");
}
