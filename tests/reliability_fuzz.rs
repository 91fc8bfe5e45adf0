//! Fuzzing that runs in CI: the harnesses of the cargo-fuzz targets (fuzz/harness.rs) driven
//! by proptest over arbitrary bytes, byte-level mutations of valid files and JSON-level
//! mutations of valid files, for the three parsers of a run directory: tokenizer.json,
//! config.json (and TOML presets), and the safetensors checkpoint / weights loader. Any panic,
//! or an error that does not name the file, fails. Every input a fuzzer ever crashed on is
//! kept under fuzz/regressions/<target>/ and replayed by `fuzz_regressions_do_not_crash`.
//!
//! Case counts keep the whole file under ~30 s on two cores; `CONVLM_FUZZ_SCALE=N` runs N
//! times as many cases, and `cargo fuzz run <target>` in fuzz/ fuzzes with coverage guidance
//! (docs/reliability.md).

#[path = "../fuzz/harness.rs"]
mod harness;

mod common;

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;

fn seed_dir() -> PathBuf {
    harness::seeds()
}

fn read(rel: &str) -> Vec<u8> {
    let p = seed_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tokenizer_seeds() -> Vec<Vec<u8>> {
    vec![read("tokenizer/char.json"), read("tokenizer/bpe.json")]
}

fn config_seeds() -> Vec<Vec<u8>> {
    let mut v = vec![read("run/config.json")];
    let presets = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/configs"));
    let mut names: Vec<_> = std::fs::read_dir(&presets).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    v.extend(names.iter().map(|p| std::fs::read(p).unwrap()));
    v
}

fn checkpoint_seeds() -> Vec<Vec<u8>> {
    vec![read("run/optimizer.safetensors"), read("run/model.safetensors")]
}

/// One byte-level edit: (kind, position, byte).
type Edit = (u8, usize, u8);

fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(kind, pos, byte) in edits {
        let at = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match kind % 7 {
            0 if at < b.len() => b[at] ^= 1 << (byte % 8),
            1 if at < b.len() => b[at] = byte,
            2 => b.insert(at, byte),
            3 => {
                let end = (at + 1 + byte as usize % 16).min(b.len());
                b.drain(at.min(end)..end);
            }
            4 => b.truncate(at),
            5 => {
                // Duplicate a chunk (repeated keys, tensors listed twice...).
                let end = (at + 1 + byte as usize).min(b.len());
                let chunk = b[at.min(end)..end].to_vec();
                let dst = pos.rotate_left(17) % (b.len() + 1);
                b.splice(dst..dst, chunk);
            }
            _ if at < b.len() => {
                // A digit, a quote or a bracket: the bytes JSON and the safetensors header hinge on.
                b[at] = b"0123456789\"{}[],:-.e "[byte as usize % 21];
            }
            _ => {}
        }
    }
    b
}

/// Values that break assumptions: zero, negative, huge, wrong type, empty.
fn nasty(i: u8) -> Value {
    let all = [
        Value::Null,
        0.into(),
        (-1).into(),
        1.into(),
        u64::MAX.into(),
        (i64::MIN).into(),
        1e39.into(),
        (-1e-45).into(),
        0.5.into(),
        "".into(),
        "x".into(),
        true.into(),
        Value::Array(vec![]),
        Value::Array(vec![0.into(), 1.into()]),
        serde_json::json!({}),
        "<pad>".into(),
        "ab".into(),
    ];
    all[i as usize % all.len()].clone()
}

/// Replaces the `n`-th node (pre-order) of `v` with `with`; returns whether it was found.
fn replace_nth(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, n, with)),
        Value::Object(o) => o.values_mut().any(|x| replace_nth(x, n, with)),
        _ => false,
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// JSON-level mutation: swap some nodes for nasty values, or drop object keys.
fn mutate_json(seed: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(seed).expect("seed is JSON");
    for &(node, val) in edits {
        let total = count(&v);
        let mut n = node % total;
        if val % 5 == 0 {
            // Delete a key from the object holding that node (a missing field).
            drop_nth_key(&mut v, &mut n);
        } else {
            replace_nth(&mut v, &mut n, &nasty(val));
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn drop_nth_key(v: &mut Value, n: &mut usize) -> bool {
    if let Value::Object(o) = v {
        let keys: Vec<String> = o.keys().cloned().collect();
        if *n < keys.len() {
            o.remove(&keys[*n]);
            return true;
        }
        *n -= keys.len();
        return o.values_mut().any(|x| drop_nth_key(x, n));
    }
    if let Value::Array(a) = v {
        return a.iter_mut().any(|x| drop_nth_key(x, n));
    }
    false
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
}

fn json_edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)
}

/// `CONVLM_FUZZ_SCALE=N` multiplies every case count (longer local fuzzing sessions); failures
/// are kept in proptest-regressions/ (`common::property`).
fn config(cases: u32) -> ProptestConfig {
    let scale: u32 = std::env::var("CONVLM_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    common::property::config(file!(), cases.saturating_mul(scale))
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn tokenizer_json_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        harness::tokenizer_json(&data);
    }

    #[test]
    fn tokenizer_json_mutated_bytes(which in 0usize..2, e in edits()) {
        harness::tokenizer_json(&mutate(&tokenizer_seeds()[which], &e));
    }

    #[test]
    fn tokenizer_json_mutated_values(which in 0usize..2, e in json_edits()) {
        harness::tokenizer_json(&mutate_json(&tokenizer_seeds()[which], &e));
    }

    #[test]
    fn run_config_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        harness::run_config(&data);
    }

    #[test]
    fn run_config_mutated_bytes(which in 0usize..6, e in edits()) {
        let seeds = config_seeds();
        harness::run_config(&mutate(&seeds[which % seeds.len()], &e));
    }

    #[test]
    fn run_config_mutated_values(e in json_edits()) {
        harness::run_config(&mutate_json(&config_seeds()[0], &e));
    }

    #[test]
    fn checkpoint_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        harness::checkpoint(&data);
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn checkpoint_mutated_bytes(which in 0usize..2, e in edits()) {
        harness::checkpoint(&mutate(&checkpoint_seeds()[which], &e));
    }

    #[test]
    fn checkpoint_mutated_header_values(which in 0usize..2, e in json_edits()) {
        // Mutate the JSON header, then re-frame it with a consistent length so the loader
        // gets past the framing checks into the tensor and metadata checks.
        let seed = &checkpoint_seeds()[which];
        let n = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
        let header = mutate_json(&seed[8..8 + n], &e);
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&header);
        file.extend_from_slice(&seed[8 + n..]);
        harness::checkpoint(&file);
    }
}

#[test]
fn seeds_load_cleanly() {
    for s in tokenizer_seeds() {
        harness::tokenizer_json(&s);
    }
    for s in config_seeds() {
        harness::run_config(&s);
    }
    for s in checkpoint_seeds() {
        harness::checkpoint(&s);
    }
}

#[test]
fn fuzz_regressions_do_not_crash() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions"));
    let mut n = 0;
    for (target, run) in [("tokenizer_json", harness::tokenizer_json as fn(&[u8])), ("run_config", harness::run_config), ("checkpoint", harness::checkpoint)] {
        let dir = std::fs::read_dir(root.join(target)).unwrap_or_else(|e| panic!("fuzz/regressions/{target}: {e}"));
        let mut replayed = 0;
        for e in dir {
            let p = e.unwrap().path();
            run(&std::fs::read(&p).unwrap());
            replayed += 1;
        }
        // Each folder holds inputs that once broke its parser: an empty one replays nothing.
        assert!(replayed > 0, "fuzz/regressions/{target} holds no input");
        n += replayed;
    }
    eprintln!("replayed {n} regression inputs");
}
