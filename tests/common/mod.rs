//! Helpers shared by integration tests: reading the PyTorch golden files of ../shared, and
//! running the binary (`cli`).
#![allow(dead_code)]

pub mod cli;
pub mod property;

use std::path::PathBuf;

use convlm::models::ModelConfig;
use convlm::Tensor;
use serde_json::Value;

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
