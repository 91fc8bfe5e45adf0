//! Never lose a run, part 2 (docs/reliability.md, section 11): through the binary, a damaged
//! checkpoint is refused before it can be resumed over good weights, a divergence never
//! replaces a good file with a bad one, checkpoints from before checksums still load, a run
//! stopped before its first checkpoint resumes from step 0, a failed resume writes nothing,
//! and `--checkpoint-every` may change on resume.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cli::{convlm, fails, s, stderr, stdout, succeeds};
use common::runs::{copy_run, snapshot, NAMES};
use serde_json::Value;

/// The files a checkpoint writes, with their bytes.
fn weights(run: &Path) -> Vec<(String, Vec<u8>)> {
    ["optimizer.safetensors", "model.safetensors", "best.safetensors", "state.json"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(run.join(f)).unwrap()))
        .collect()
}

fn resume_args(run: &Path, steps: &str) -> Vec<String> {
    ["train", "--resume", "--out", s(run), "--steps", steps, "-q"].map(String::from).to_vec()
}

/// The JSON header and the data of a safetensors file.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// A safetensors file of `header` and `data` (the header padded to 8 bytes).
fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_string(header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    [&(h.len() as u64).to_le_bytes()[..], h.as_bytes(), data].concat()
}

/// Rewrites a tensor file as convlm wrote it before checksums: the same header without
/// `checksum`, with `edit` applied to the named tensor's values.
fn as_legacy(path: &Path, tensor: &str, edit: impl Fn(&mut [f32])) {
    let (mut header, mut data) = split(&std::fs::read(path).unwrap());
    assert!(header["__metadata__"].as_object_mut().unwrap().remove("checksum").is_some(), "convlm writes a checksum");
    if !tensor.is_empty() {
        let offsets = header[tensor]["data_offsets"].as_array().unwrap_or_else(|| panic!("no tensor {tensor}"));
        let (a, b) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
        let mut values: Vec<f32> = data[a..b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        edit(&mut values);
        data[a..b].copy_from_slice(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    }
    std::fs::write(path, join(&header, &data)).unwrap();
}

#[test]
fn random_bytes_in_a_checkpoint_are_refused_and_the_run_is_untouched() {
    let (_d, run) = copy_run();
    let ckpt = run.join("optimizer.safetensors");
    let (header, mut data) = split(&std::fs::read(&ckpt).unwrap());
    for (i, b) in data.iter_mut().enumerate().skip(100).take(40) {
        *b = (i * 7919 % 251) as u8;
    }
    std::fs::write(&ckpt, join(&header, &data)).unwrap();
    let before = snapshot(&run);
    let err = fails(1, &resume_args(&run, "60"), &[s(&ckpt), "checksum mismatch", "damaged"]);
    assert!(!err.contains("diverged"), "{err}");
    assert_eq!(snapshot(&run), before, "a refused resume wrote into the run");
    // The weights are as good as they were: eval --last scores them.
    let out = succeeds(&["eval", "--run", s(&run), "--last"]);
    assert!(stdout(&out).contains("loss 3.") || stdout(&out).contains("loss 2."), "{}", stdout(&out));
    // Flipped bits in the weights are refused by sample and eval too.
    let model = run.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&model, bytes).unwrap();
    fails(1, &["eval", "--run", s(&run), "--last"], &[s(&model), "checksum mismatch"]);
    fails(1, &["sample", "--run", s(&run), "--last", "-n", "1"], &[s(&model), "checksum mismatch"]);
}

#[test]
fn checkpoints_from_before_checksums_load_and_non_finite_values_in_them_are_refused() {
    let (_d, run) = copy_run();
    let ckpt = run.join("optimizer.safetensors");
    as_legacy(&ckpt, "", |_| {});
    as_legacy(&run.join("model.safetensors"), "", |_| {});
    let out = succeeds(&resume_args(&run, "40"));
    assert!(stdout(&out).contains("trained 40 steps"), "{}", stdout(&out));
    // NaN written into a checkpoint without a checksum: resume names the tensor and writes
    // nothing; eval of NaN weights is an error, not `loss NaN`.
    let (_d, run) = copy_run();
    let ckpt = run.join("optimizer.safetensors");
    as_legacy(&ckpt, "model.convs.0.weight", |v| v[3] = f32::NAN);
    let before = snapshot(&run);
    fails(1, &resume_args(&run, "40"), &[s(&ckpt), "tensor `model.convs.0.weight` holds NaN at index 3"]);
    assert_eq!(snapshot(&run), before);
    let model = run.join("model.safetensors");
    as_legacy(&model, "head.weight", |v| v[0] = f32::INFINITY);
    fails(1, &["eval", "--run", s(&run), "--last"], &[s(&model), "holds inf at index 0"]);
}

#[test]
fn a_divergence_right_after_the_checkpoint_keeps_every_file() {
    // Finite garbage in an old checkpoint (no checksum to catch it): Adam's first moment near
    // f32::MAX makes the first update overflow. The checkpoint on disk is the last good
    // state, and nothing is rewritten from the diverged model.
    let (_d, run) = copy_run();
    as_legacy(&run.join("optimizer.safetensors"), "exp_avg.head.weight", |v| v.iter_mut().for_each(|x| *x = 3e38));
    let before = weights(&run);
    fails(1, &resume_args(&run, "40"), &["training diverged at step 31", "after the update", "the last good checkpoint (step 30)", s(&run)]);
    assert!(weights(&run) == before, "a diverged resume rewrote the run's weights");
}

#[test]
fn a_run_stopped_before_its_first_checkpoint_resumes_from_step_0_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        let flags = "--steps 3000 --eval-every 3000 --batch-size 8 --seed 4 -q --set model.channels=16 --set train.eval_batches=2";
        [vec!["train".to_string(), "--data".into(), NAMES.into(), "--out".into(), s(out).into()], flags.split(' ').map(String::from).collect()].concat()
    };
    let run = dir.path().join("killed");
    let mut child = common::process::spawn(&args(&run));
    // Killed (SIGKILL, as a crash or the OOM killer would) once it has logged a step, long
    // before its first checkpoint at step 3000.
    let start = Instant::now();
    while !std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|t| !t.is_empty()) {
        assert!(child.try_wait().unwrap().is_none(), "training ended before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no steps logged");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    if ["optimizer.safetensors", "best.safetensors"].iter().any(|f| run.join(f).exists()) {
        eprintln!("skipped: the run reached its checkpoint before the kill (an unusually fast machine)");
        return;
    }
    // A new run is refused (the folder holds a run); --resume starts it again from step 0.
    fails(1, &args(&run), &["already holds a run", "--resume"]);
    let out = succeeds(&resume_args(&run, "3000"));
    assert!(stdout(&out).contains("trained 3000 steps"), "{}", stdout(&out));
    let reference = dir.path().join("reference");
    succeeds(&args(&reference));
    for f in ["model.safetensors", "best.safetensors"] {
        assert!(std::fs::read(run.join(f)).unwrap() == std::fs::read(reference.join(f)).unwrap(), "{f} differs from an uninterrupted run's");
    }
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r.get("loss").is_some())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=3000).collect::<Vec<_>>(), "the log has gaps or repeats");
}

#[test]
fn a_failed_resume_of_a_run_without_a_marker_writes_nothing() {
    // A run from before run markers, whose tokenizer.json was swapped for one of another
    // size: the resume fails, and must not mark the run with that tokenizer's fingerprint.
    let (_d, run) = copy_run();
    std::fs::remove_file(run.join("run.json")).unwrap();
    let tok_path = run.join("tokenizer.json");
    let good = std::fs::read_to_string(&tok_path).unwrap();
    let mut other: Value = serde_json::from_str(&good).unwrap();
    other["vocab"].as_array_mut().unwrap().push("é".into());
    std::fs::write(&tok_path, serde_json::to_string(&other).unwrap()).unwrap();
    fails(1, &resume_args(&run, "40"), &["tokenizer.json has 31"]);
    assert!(!run.join("run.json").exists(), "a failed resume marked the run");
    // With its own tokenizer back, the run resumes, is marked, and reads back cleanly.
    std::fs::write(&tok_path, good).unwrap();
    succeeds(&resume_args(&run, "40"));
    assert!(run.join("run.json").is_file());
    succeeds(&["sample", "--run", s(&run), "-n", "2"]);
    succeeds(&["eval", "--run", s(&run)]);
}

#[test]
fn checkpoint_every_may_change_on_resume_and_changes_no_setting() {
    let (_d, run) = copy_run();
    let config = std::fs::read(run.join("config.json")).unwrap();
    let out = convlm(&[resume_args(&run, "40"), vec!["--checkpoint-every".into(), "5".into()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config, "config.json changed");
    // The run still reads back as the one it was (its config fingerprint is unchanged).
    succeeds(&["sample", "--run", s(&run), "-n", "2"]);
    // Other settings still may not change.
    fails(1, &[resume_args(&run, "50"), vec!["--lr".into(), "0.5".into()]].concat(), &["optimizer.lr", "--checkpoint-every and --device may change"]);
}
