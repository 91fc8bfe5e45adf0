//! A prepared corpus knows its kind: `train --data CORPUS` without `--dataset` trains on it as
//! it was prepared (stream, lines or grid) instead of the family's default, while a kind the
//! run asks for (`--dataset`, `--set data.kind`, a preset that sets it) and the corpus's
//! disagreeing is an error naming the corpus.

mod common;

use std::path::Path;

use common::cli::{command, s, stderr, text};
use serde_json::Value;

/// Runs the binary with its corpus cache in `cache`, asserting success.
fn ok(args: &[&str], cache: &Path) {
    let out = command().args(args).env("CONVLM_CACHE", cache).output().expect("convlm runs");
    assert!(out.status.success(), "convlm {args:?} failed:\n{}\n{}", text(&out.stdout), stderr(&out));
}

/// Runs the binary, asserting exit code 1 and that stderr holds every one of `parts`.
fn refused(args: &[&str], cache: &Path, parts: &[&str]) {
    let out = command().args(args).env("CONVLM_CACHE", cache).output().expect("convlm runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "convlm {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for p in parts {
        assert!(err.contains(p), "convlm {args:?}: stderr lacks `{p}`:\n{err}");
    }
}

/// The `data.kind` a run recorded in its config.json.
fn run_kind(run: &Path) -> String {
    let config: Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    config["data"]["kind"].as_str().unwrap().to_string()
}

/// A small text prepared as `kind` into `dir/name`.
fn corpus(dir: &Path, name: &str, kind: &str, cache: &Path) -> String {
    let text = dir.join(format!("{name}.txt"));
    let shakespeare = std::fs::read_to_string(common::shared("data/tinyshakespeare.txt")).unwrap();
    std::fs::write(&text, &shakespeare[..20_000]).unwrap();
    let out = dir.join(name);
    ok(&["prepare", "--data", s(&text), "--out", s(&out), "--dataset", kind], cache);
    s(&out).to_string()
}

#[test]
fn a_run_on_a_prepared_corpus_takes_its_kind_unless_one_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let stream = corpus(dir.path(), "stream", "stream", &cache);
    let lines = corpus(dir.path(), "lines", "lines", &cache);
    let run = |name: &str| dir.path().join(name);

    // The example: hyena's default is lines, the corpus is a stream.
    ok(&["train", "--model", "hyena", "--data", &stream, "--out", s(&run("hyena")), "--steps", "2", "-q"], &cache);
    assert_eq!(run_kind(&run("hyena")), "stream");
    // No flags at all: the default run (lines) trains on the stream too.
    ok(&["train", "--data", &stream, "--out", s(&run("default")), "--steps", "2", "-q"], &cache);
    assert_eq!(run_kind(&run("default")), "stream");
    // A preset file that leaves data.kind out is a family default as well.
    let toml = dir.path().join("cnn.toml");
    std::fs::write(&toml, "[model]\nfamily = \"causal-cnn\"\nn_layers = 2\n").unwrap();
    ok(&["train", "--config", s(&toml), "--data", &stream, "--out", s(&run("toml")), "--steps", "2", "-q"], &cache);
    assert_eq!(run_kind(&run("toml")), "stream");
    // And a lines corpus is lines data, with the same preset file.
    ok(&["train", "--config", s(&toml), "--data", &lines, "--out", s(&run("toml-lines")), "--steps", "2", "-q"], &cache);
    assert_eq!(run_kind(&run("toml-lines")), "lines");

    // A resumed run keeps the kind it took, with the same flags as before.
    ok(&["train", "--resume", "--config", s(&toml), "--data", &stream, "--out", s(&run("toml")), "--steps", "3", "-q"], &cache);
    assert_eq!(run_kind(&run("toml")), "stream");

    // A kind asked for that is not the corpus's is still an error, however it is asked.
    let disagree = [stream.as_str(), "is a corpus prepared as stream data, but the run asks for lines"];
    refused(&["train", "--model", "hyena", "--dataset", "lines", "--data", &stream, "--out", s(&run("x1")), "--steps", "2", "-q"], &cache, &disagree);
    refused(&["train", "--set", "data.kind=lines", "--data", &stream, "--out", s(&run("x2")), "--steps", "2", "-q"], &cache, &disagree);
    refused(&["train", "--config", "names-best", "--data", &stream, "--out", s(&run("x3")), "--steps", "2", "-q"], &cache, &disagree);
    refused(
        &["train", "--config", "shakespeare-hyena", "--data", &lines, "--out", s(&run("x4")), "--steps", "2", "-q"],
        &cache,
        &[&lines, "is a corpus prepared as lines data, but the run asks for stream"],
    );
    for x in ["x1", "x2", "x3", "x4"] {
        assert!(!run(x).exists(), "no run started in {x}");
    }
}

#[test]
fn a_corpus_of_a_kind_the_family_cannot_train_on_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let stream = corpus(dir.path(), "stream", "stream", &cache);
    let grid = corpus(dir.path(), "grid", "grid", &cache);
    refused(
        &["train", "--model", "pixelcnn", "--data", &stream, "--out", s(&dir.path().join("r1")), "--steps", "2", "-q"],
        &cache,
        &[&stream, "prepared as stream data, but family pixelcnn trains on grid data"],
    );
    refused(
        &["train", "--model", "hyena", "--data", &grid, "--out", s(&dir.path().join("r2")), "--steps", "2", "-q"],
        &cache,
        &[&grid, "prepared as grid data, but family hyena trains on lines or stream data"],
    );
    // pixelcnn on a grid corpus takes it as it is.
    ok(&["train", "--model", "pixelcnn", "--data", &grid, "--out", s(&dir.path().join("r3")), "--steps", "2", "-q"], &cache);
    assert_eq!(run_kind(&dir.path().join("r3")), "grid");
}
