//! `--precision` through the binary: a bf16 run records its precision and resumes with it,
//! a resume may not change it, `bench` labels its rows, and a CPU without AVX512_BF16
//! (made so with `CONVLM_CPU_DISABLE=avx512bf16`) gets an error naming the feature and the
//! flag. `convlm peak` measures the CPU.

mod common;

use common::cli::{command, fails, s, stderr, stdout, succeeds, text, train_args};
use serde_json::Value;

fn json_line(out: &std::process::Output) -> Value {
    let text = stdout(out);
    serde_json::from_str(text.lines().last().expect("a JSON line")).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_cpu_without_avx512_bf16_gets_an_error_naming_the_feature_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let names = common::shared("data/names.txt");
    for args in [
        train_args(&names, &dir.path().join("run"), "--steps 3 --precision bf16"),
        ["bench", "--workload", "w2", "--steps", "1", "--precision", "bf16"].map(String::from).to_vec(),
    ] {
        let out = command().args(&args).env("CONVLM_CPU_DISABLE", "avx512bf16").output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("AVX512_BF16") && err.contains("--precision fp32") && !err.contains("panicked"), "{args:?}: {err}");
    }
    // Nothing was claimed or written for the refused run.
    assert!(!dir.path().join("run").join("model.safetensors").exists());
    fails(2, &["train", "--precision", "fp16"], &["--precision", "fp16"]);
}

#[test]
fn auto_records_bf16_where_the_cpu_has_it_and_fp32_where_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let names = common::shared("data/names.txt");
    let flags = "--steps 2 --precision auto --set train.eval_batches=1 --set train.samples=0";
    let precision_of = |run: &std::path::Path| -> Value {
        let config: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
        config["train"].get("precision").cloned().unwrap_or(Value::Null)
    };
    // This CPU as it is: bf16 exactly where it has the instructions (an fp32 run's config
    // leaves the precision out).
    let run = dir.path().join("auto");
    succeeds(&train_args(&names, &run, flags));
    let expected = if common::bf16_available() { Value::from("bf16") } else { Value::Null };
    assert_eq!(precision_of(&run), expected);
    // `auto` asked again on resume is the precision chosen, not a change.
    succeeds(&["train", "--resume", "--out", s(&run), "--steps", "3", "--precision", "auto", "-q"]);
    // The same CPU with the instructions hidden: fp32, where bf16 would have been refused.
    let hidden = dir.path().join("hidden");
    let out = command().args(train_args(&names, &hidden, flags)).env("CONVLM_CPU_DISABLE", "avx512bf16").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(precision_of(&hidden), Value::Null);
    let bench = command()
        .args(["bench", "--workload", "w2", "--steps", "1", "--warmup", "0", "--precision", "auto"])
        .env("CONVLM_CPU_DISABLE", "avx512bf16")
        .output()
        .unwrap();
    assert_eq!(json_line(&bench)["precision"], "fp32");
}

#[test]
fn a_bf16_run_keeps_its_precision_through_resume() {
    if !common::bf16_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (names, run) = (common::shared("data/names.txt"), dir.path().join("run"));
    succeeds(&train_args(&names, &run, "--steps 4 --precision bf16 --eval-every 2 --set train.eval_batches=1 --set train.samples=0"));
    let config: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["precision"], "bf16");
    // Repeating the flag is fine; changing it is refused, naming the setting.
    succeeds(&["train", "--resume", "--out", s(&run), "--steps", "6", "--precision", "bf16", "-q"]);
    let err = fails(1, &["train", "--resume", "--out", s(&run), "--steps", "8", "--precision", "fp32", "-q"], &["train.precision"]);
    assert!(err.contains("bf16"), "{err}");
    // An fp32 run's config.json does not mention the precision (old configs keep their form).
    let plain = dir.path().join("plain");
    succeeds(&train_args(&names, &plain, "--steps 2 --set train.eval_batches=1 --set train.samples=0"));
    let config: Value = serde_json::from_str(&std::fs::read_to_string(plain.join("config.json")).unwrap()).unwrap();
    assert!(config["train"].get("precision").is_none(), "{config}");
    // The bf16 run's checkpoints are the fp32 run's: every tensor F32, the same names and
    // shapes (what reference/models.py loads with strict=True; tests/checkpoint_layout.rs
    // checks those against PyTorch's).
    for file in ["model.safetensors", "best.safetensors"] {
        let (bf16, fp32) = (safetensors_layout(&run.join(file)), safetensors_layout(&plain.join(file)));
        assert!(!bf16.is_empty() && bf16.values().all(|(dtype, _)| dtype == "F32"), "{file}: {bf16:?}");
        assert_eq!(bf16, fp32, "{file}: the bf16 run saved other tensors than the fp32 run");
    }
}

/// Name -> (dtype, shape) of every tensor of a safetensors file, read from its header.
fn safetensors_layout(path: &std::path::Path) -> std::collections::BTreeMap<String, (String, Vec<u64>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, t)| {
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            (name, (t["dtype"].as_str().unwrap().to_string(), shape))
        })
        .collect()
}

#[test]
fn bench_rows_name_their_precision_cpu_and_peak() {
    let fp32 = json_line(&succeeds(&["bench", "--workload", "w2", "--steps", "2", "--warmup", "0"]));
    assert_eq!((fp32["framework"].as_str(), fp32["precision"].as_str()), (Some("convlm"), Some("fp32")));
    assert!(fp32["cpu"].as_str().is_some_and(|c| !c.is_empty()) && fp32["peak_fp32_gflops"].as_f64().is_some_and(|p| p > 0.0), "{fp32}");
    if common::bf16_available() {
        let bf16 = json_line(&succeeds(&["bench", "--workload", "w2", "--steps", "2", "--warmup", "0", "--precision", "bf16"]));
        assert_eq!((bf16["framework"].as_str(), bf16["precision"].as_str()), (Some("convlm+bf16"), Some("bf16")));
        assert!(bf16["peak_bf16_gflops"].as_f64().is_some_and(|p| p > 0.0), "{bf16}");
        // The same model and batches: the first loss agrees to bf16's rounding of the logits.
        let (a, b) = (fp32["loss_first"].as_f64().unwrap(), bf16["loss_first"].as_f64().unwrap());
        assert!((a - b).abs() < 0.01 * a, "{a} vs {b}");
    }
}

#[test]
fn peak_prints_the_cpu_and_its_gflops() {
    let out = succeeds(&["peak", "--threads", "1", "--reps", "1"]);
    let peak = json_line(&out);
    assert!(peak["fp32_gflops"].as_f64().is_some_and(|g| g > 0.0), "{}", text(&out.stdout));
    assert_eq!(peak["threads"], 1);
    assert_eq!(peak["bf16_gflops"].is_null(), convlm::tensor::cpu::avx512_bf16().is_none(), "{peak}");
}
