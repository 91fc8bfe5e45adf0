//! Helpers shared by integration tests: reading the PyTorch golden files of ../shared, and
//! running the binary (`cli`).
#![allow(dead_code)]

pub mod cli;
pub mod gpu;
pub mod process;
pub mod property;
pub mod runs;

use std::path::PathBuf;

use convlm::models::ModelConfig;
use convlm::run::RunConfig;
use convlm::Tensor;
use serde_json::{json, Value};

/// `../shared/<rel>` beside the repository.
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")).join(rel)
}

/// Parses a JSON file.
pub fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `{"shape", "data"}` object as a tensor.
pub fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
    let data: Vec<f32> = v["data"].as_array().expect("data").iter().map(|d| d.as_f64().expect("number") as f32).collect();
    Tensor::new(shape, data).expect("consistent golden tensor")
}

/// A `{"shape", "data"}` object of integers, with its shape.
pub fn ints(v: &Value) -> (Vec<usize>, Vec<i64>) {
    let shape = v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
    let data = v["data"].as_array().expect("data").iter().map(|d| d.as_i64().expect("int")).collect();
    (shape, data)
}

/// Named tensors of a `{name: tensor}` object, in file order.
pub fn named(v: &Value) -> Vec<(String, Tensor)> {
    v.as_object().expect("object").iter().map(|(k, t)| (k.clone(), tensor(t))).collect()
}

/// A golden model file's config as (ModelConfig, vocab_size).
pub fn model_config(doc: &Value) -> (ModelConfig, usize) {
    let mut cfg = doc["config"].clone();
    let obj = cfg.as_object_mut().expect("config object");
    let vocab = obj.remove("vocab_size").and_then(|v| v.as_u64()).expect("vocab_size") as usize;
    obj.insert("family".into(), doc["family"].clone());
    (serde_json::from_value(cfg).expect("config parses"), vocab)
}

/// Asserts |a - b| <= atol + rtol * |b| elementwise, naming `what` and the worst index.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let excess = (g as f64 - w as f64).abs() - (atol + rtol * (w as f64).abs());
        if excess > worst.1 || !g.is_finite() {
            worst = (i, excess.max(f64::MAX * (!g.is_finite()) as u8 as f64));
        }
    }
    assert!(worst.1 <= 0.0, "{what}: element {} is {} but PyTorch has {}", worst.0, got[worst.0], want[worst.0]);
}

/// Whether this CPU runs bf16 products. Without them a test prints `skipped: <reason>` and
/// should return, unless `CONVLM_REQUIRE_BF16=1` (set by `.ci/run` where /proc/cpuinfo lists
/// avx512_bf16) says they must be there: then it fails.
pub fn bf16_available() -> bool {
    if convlm::tensor::cpu::avx512_bf16().is_some() {
        return true;
    }
    let reason = format!("the CPU ({}) has no AVX512_BF16, which --precision bf16 needs", convlm::tensor::cpu::model_name());
    assert!(std::env::var("CONVLM_REQUIRE_BF16").as_deref() != Ok("1"), "CONVLM_REQUIRE_BF16=1 but {reason}");
    println!("skipped: {reason}");
    false
}

/// A 12-step run on `data` of a small dilated CNN (n_embd 8, 16 channels, dilations 1-2-4)
/// with `dropout`: batches of 8, one thread, no samples, an evaluation of 2 batches every 4
/// steps. The run the library-level run tests vary.
pub fn small_run(data: &std::path::Path, dropout: f32) -> RunConfig {
    let model = ModelConfig::from_value(json!({"family": "dilated", "n_embd": 8, "channels": 16, "dilations": [1, 2, 4], "dropout": dropout})).unwrap();
    let mut cfg = RunConfig { model, ..RunConfig::default() };
    cfg.data.path = Some(data.to_path_buf());
    cfg.train.steps = 12;
    cfg.train.batch_size = 8;
    cfg.train.eval_every = 4;
    cfg.train.eval_batches = 2;
    cfg.train.samples = 0;
    cfg.train.threads = Some(1);
    cfg
}
