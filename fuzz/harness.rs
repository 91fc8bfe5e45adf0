//! The three fuzz harnesses, shared by the cargo-fuzz targets (fuzz/fuzz_targets/*.rs) and by
//! the proptest suite that runs in CI (tests/reliability_fuzz.rs). Each feeds arbitrary
//! bytes to one parser the way convlm reads a run directory, and panics (= a crash for the
//! fuzzer, a failure for the test) when the parser panics or returns an error that does not
//! name the file it read.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use convlm::data::Tokenizer;
use convlm::models::Model;
use convlm::optim::Optimizer;
use convlm::run::checkpoint::{CHECKPOINT_FILE, CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE};
use convlm::run::config::RunConfig;
use convlm::run::RunDir;
use convlm::Error;

/// fuzz/seeds: a tiny trained run (config, tokenizer, model and checkpoint) and two
/// tokenizers. (This file is compiled in the fuzz crate and in the root crate's tests.)
pub fn seeds() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if base.join("seeds/run").is_dir() {
        base.join("seeds")
    } else {
        base.join("fuzz/seeds")
    }
}

/// Asserts that a parser's error is the BadFile/Io kind and names `path`.
fn check_error(e: &Error, path: &Path) {
    match e {
        Error::BadFile { path: p, .. } | Error::Io { path: p, .. } => {
            assert_eq!(p, path, "error names {} instead of {}: {e}", p.display(), path.display())
        }
        other => panic!("error of the wrong kind (no file named): {other}"),
    }
}

thread_local! {
    /// One scratch run directory per thread (tests fuzz on several threads at once).
    static SCRATCH: tempfile::TempDir = tempfile::tempdir().expect("temp dir");
}

fn scratch() -> PathBuf {
    SCRATCH.with(|d| d.path().to_path_buf())
}

/// `tokenizer.json`: either format; if it parses, it must encode, decode and (character
/// tokenizers) round-trip through its own JSON.
pub fn tokenizer_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("run/tokenizer.json");
    match Tokenizer::from_json(text, path) {
        Err(e) => check_error(&e, path),
        Ok(tok) => {
            let n = tok.vocab_size();
            let _ = tok.encode("Emma, Olivia & Zoë 123");
            let ids: Vec<u32> = (0..n.min(300) as u32).chain([n as u32, u32::MAX]).collect();
            let _ = tok.decode(&ids);
            let _ = tok.token_text(0);
            let _ = tok.token_text(u32::MAX);
            if let Tokenizer::Char(_) = tok {
                let json = tok.to_json().expect("a loaded tokenizer serializes");
                let again = Tokenizer::from_json(&json, path).expect("a saved tokenizer loads");
                assert_eq!(again.vocab_size(), n);
            }
        }
    }
}

/// `config.json` of a run (JSON, checked as `RunDir::load_config` checks it) and the same
/// text as a TOML preset.
pub fn run_config(data: &[u8]) {
    let dir = scratch();
    let run = RunDir::new(&dir);
    let path = run.file(CONFIG_FILE);
    std::fs::write(&path, data).expect("write config");
    match run.load_config() {
        Err(e) => check_error(&e, &path),
        Ok(c) => {
            // What was loaded saves and loads back to the same config.
            let json = serde_json::to_string(&c).expect("serializes");
            let again: RunConfig = serde_json::from_str(&json).expect("reloads");
            assert_eq!(again, c);
            // A model of a small enough valid config builds (or is refused) without a panic.
            if small(&serde_json::to_value(&c.model).expect("model to JSON")) {
                if let Ok(m) = Model::new(&c.model, 30, c.seed) {
                    let _ = (m.receptive_field(), m.state_dict());
                }
            }
        }
    }
    let toml_path = dir.join("preset.toml");
    std::fs::write(&toml_path, data).expect("write preset");
    match RunConfig::from_toml_file(&toml_path) {
        Err(e) => check_error(&e, &toml_path),
        Ok(c) => {
            let _ = c.validate();
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // --set KEY=VALUE overrides: errors are config errors, never panics.
        let _ = convlm::run::config::apply_overrides(&RunConfig::default(), &[text.to_string()]);
    }
}

/// Every number at most 64 and every list at most 8 long: a model cheap to build.
fn small(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() <= 64.0),
        Value::Array(a) => a.len() <= 8 && a.iter().all(small),
        Value::Object(o) => o.values().all(small),
        _ => true,
    }
}

/// The fixture run: the seed run's config and tokenizer (a tiny dilated CNN).
fn fixture() -> &'static (RunConfig, Tokenizer) {
    static F: OnceLock<(RunConfig, Tokenizer)> = OnceLock::new();
    F.get_or_init(|| {
        let run = RunDir::new(seeds().join("run"));
        (run.load_config().expect("seed config"), run.load_tokenizer().expect("seed tokenizer"))
    })
}

/// `optimizer.safetensors` (the resumable checkpoint, as `--resume` loads it) and
/// `model.safetensors` (as `sample`/`eval` load it).
pub fn checkpoint(data: &[u8]) {
    let (config, tok) = fixture();
    let run = RunDir::new(scratch());
    let ckpt = run.file(CHECKPOINT_FILE);
    std::fs::write(&ckpt, data).expect("write checkpoint");
    let mut model = Model::new(&config.model, tok.vocab_size(), config.seed).expect("model");
    let mut opt = Optimizer::new(&config.optimizer, model.params()).expect("optimizer");
    match run.load_checkpoint(&mut model, &mut opt, config, tok) {
        Err(e) => check_error(&e, &ckpt),
        Ok(state) => {
            // A loaded checkpoint saves again (what training does next) and reloads equal.
            let again = RunDir::new(run.root().join("again"));
            again.create().expect("mkdir");
            again.save_checkpoint(&model, &opt, &state).expect("a loaded checkpoint saves");
            let mut m2 = Model::new(&config.model, tok.vocab_size(), config.seed).expect("model");
            let mut o2 = Optimizer::new(&config.optimizer, m2.params()).expect("optimizer");
            let s2 = again.load_checkpoint(&mut m2, &mut o2, config, tok).expect("a saved checkpoint loads");
            assert_eq!(s2, state);
        }
    }
    let weights = run.file(MODEL_FILE);
    std::fs::write(&weights, data).expect("write weights");
    if let Err(e) = run.load_model(MODEL_FILE, config, tok) {
        check_error(&e, &weights);
    }
    let _ = TOKENIZER_FILE;
}
