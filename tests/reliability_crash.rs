//! Crash safety through the `convlm` binary (docs/reliability.md):
//! - SIGKILL mid-training, repeatedly, then `--resume`: the run ends exactly where an
//!   uninterrupted run of the same config ends (bit-equal losses, identical checkpoint bytes);
//! - SIGINT (Ctrl-C): exit code 130, a message, a checkpoint at the last logged step, and an
//!   exact resume;
//! - a non-finite loss: an error naming the step, and a finite, loadable last good checkpoint.
//!
//! Every wait is a poll with a generous deadline, never a sleep that assumes a speed.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::cli::{command as convlm, text};
use convlm::data::Tokenizer;
use convlm::models::Model;
use convlm::optim::Optimizer;
use convlm::run::checkpoint::TrainState;
use convlm::run::{RunConfig, RunDir};
use serde_json::Value;

const NAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/names.txt");
const STEPS: u64 = 400;
/// How long any one wait may take on a loaded machine before the test gives up.
const DEADLINE: Duration = Duration::from_secs(300);

/// The training flags shared by every run of this file (a small dilated CNN on names).
fn train_args(out: &Path) -> Vec<String> {
    let mut a: Vec<String> =
        ["train", "--data", NAMES, "--steps", &STEPS.to_string(), "--eval-every", "100", "--checkpoint-every", "25", "--batch-size", "16", "--seed", "5", "-q"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    a.extend(["--set", "model.channels=32", "--set", "train.eval_batches=4", "--out"].map(String::from));
    a.push(out.to_str().unwrap().to_string());
    a
}

fn run_ok(args: &[String]) -> Output {
    let out = convlm().args(args).output().expect("convlm runs");
    assert!(out.status.success(), "convlm {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    out
}

/// Starts a training process (stdout discarded, stderr captured).
fn spawn(args: &[String]) -> Child {
    convlm().args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("convlm starts")
}

/// The records of a metrics file, tolerating a torn last line (as convlm does).
fn records(run: &Path) -> Vec<Value> {
    let Ok(t) = std::fs::read_to_string(run.join("metrics.jsonl")) else { return Vec::new() };
    t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn last_step(run: &Path) -> u64 {
    records(run).iter().filter_map(|r| r["step"].as_u64()).max().unwrap_or(0)
}

/// Polls until the run has logged step `step` (panics if the child exits or time runs out).
fn wait_for_step(child: &mut Child, run: &Path, step: u64) -> u64 {
    let start = Instant::now();
    loop {
        let s = last_step(run);
        if s >= step {
            return s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("training exited ({status}) before step {step}; last logged step {s}");
        }
        assert!(start.elapsed() < DEADLINE, "no step {step} after {DEADLINE:?} (last logged {s})");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What must be equal between two runs: every logged value except the throughput.
fn trajectory(run: &Path) -> Vec<(u64, &'static str, u64)> {
    let mut out = Vec::new();
    for r in records(run) {
        let step = r["step"].as_u64().expect("step");
        for key in ["loss", "val_loss", "lr", "grad_norm"] {
            if let Some(v) = r.get(key).and_then(Value::as_f64) {
                // The logged f64 is an exact widening of the f32 (or an f64 sum): compare bits.
                out.push((step, key, v.to_bits()));
            }
        }
    }
    out
}

fn assert_same_run(got: &Path, want: &Path) {
    let (g, w) = (trajectory(got), trajectory(want));
    assert_eq!(g.len(), w.len(), "different numbers of logged values");
    for (a, b) in g.iter().zip(&w) {
        assert_eq!(a, b, "step {} {}: {} vs uninterrupted {}", a.0, a.1, f64::from_bits(a.2), f64::from_bits(b.2));
    }
    let losses: Vec<u64> = records(got).iter().filter(|r| r.get("loss").is_some()).map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(losses, (1..=STEPS).collect::<Vec<_>>(), "the log has gaps or repeats");
    for f in ["model.safetensors", "best.safetensors", "optimizer.safetensors", "state.json", "config.json", "tokenizer.json"] {
        let (a, b) = (std::fs::read(got.join(f)).unwrap(), std::fs::read(want.join(f)).unwrap());
        if f == "config.json" {
            continue; // identical apart from nothing today, but it may record the run directory one day
        }
        if f == "optimizer.safetensors" {
            // The same tensors and metadata; the train state equal but for its seconds.
            let load = |p: &Path| {
                let (tensors, mut meta) = convlm::io::load_safetensors(p).unwrap();
                let mut state: Value = serde_json::from_str(&meta.remove("train_state").unwrap()).unwrap();
                assert!(state.as_object_mut().unwrap().remove("train_seconds").is_some());
                let tensors: Vec<(String, Vec<u32>)> = tensors.into_iter().map(|(n, t)| (n, t.data().iter().map(|v| v.to_bits()).collect())).collect();
                (tensors, meta.into_iter().collect::<std::collections::BTreeMap<_, _>>(), state)
            };
            assert!(load(&got.join(f)) == load(&want.join(f)), "optimizer.safetensors differs from the uninterrupted run's");
            continue;
        }
        if f == "state.json" {
            // Equal in everything but the wall-clock seconds spent training.
            let parse = |bytes: &[u8]| {
                let mut v: Value = serde_json::from_slice(bytes).unwrap();
                assert!(v.as_object_mut().unwrap().remove("train_seconds").is_some_and(|t| t.as_f64().is_some()));
                v
            };
            assert_eq!(parse(&a), parse(&b), "state.json differs from the uninterrupted run's");
            continue;
        }
        assert!(a == b, "{f} differs from the uninterrupted run's");
    }
}

/// The uninterrupted reference run, trained once per test binary.
fn reference() -> &'static Path {
    static REF: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &REF.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("ref");
        let out = run_ok(&train_args(&run));
        assert!(text(&out.stdout).contains(&format!("trained {STEPS} steps")), "{}", text(&out.stdout));
        (dir, run)
    })
    .1
}

/// Loads the resumable checkpoint of `run` through the library, as `--resume` does.
fn load_checkpoint(run: &Path) -> (Model, TrainState) {
    let dir = RunDir::new(run);
    let config: RunConfig = dir.load_config().unwrap();
    let tok: Tokenizer = dir.load_tokenizer().unwrap();
    let mut model = Model::new(&config.model, tok.vocab_size(), config.seed).unwrap();
    let mut opt = Optimizer::new(&config.optimizer, model.params()).unwrap();
    let state = dir.load_checkpoint(&mut model, &mut opt, &config, &tok).unwrap_or_else(|e| panic!("checkpoint does not load: {e}"));
    (model, state)
}

#[test]
fn sigkill_then_resume_matches_an_uninterrupted_run() {
    let want = reference();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("killed");
    let args = train_args(&run);
    let mut resume = args.clone();
    resume.insert(1, "--resume".into());

    // Three kills at growing points (the later ones in the middle of a resumed run, one
    // right after an evaluation), each followed by a resume.
    let mut prev_ckpt = 0;
    for (i, target) in [60u64, 130, 260].into_iter().enumerate() {
        let mut child = spawn(if i == 0 { &args } else { &resume });
        let logged = wait_for_step(&mut child, &run, target);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "the run finished before it could be killed");
        let (_, state) = load_checkpoint(&run);
        assert!(state.step % 25 == 0 && state.step >= prev_ckpt && state.step >= target - 25, "checkpoint at step {} after a kill at {logged}", state.step);
        assert!(state.step <= last_step(&run), "checkpoint step {} is ahead of the log", state.step);
        prev_ckpt = state.step;
        if i == 0 {
            // A kill in the middle of a metrics write leaves a torn last line: simulate one.
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(run.join("metrics.jsonl")).unwrap();
            f.write_all(b"{\"grad_norm\":0.1,\"loss\":2.").unwrap();
        }
    }
    let out = run_ok(&resume);
    assert!(text(&out.stdout).contains(&format!("trained {STEPS} steps")), "{}", text(&out.stdout));
    assert_same_run(&run, want);
}

#[test]
fn kills_while_checkpointing_every_step_never_leave_a_torn_checkpoint() {
    // With a checkpoint after every step most of the run is spent inside atomic writes, so
    // the kills below land in the middle of them: each time the checkpoint must load, the
    // stale temporary files go away on resume, and the run still ends bit-identical.
    let want = reference();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("torture");
    let mut args = train_args(&run);
    let i = args.iter().position(|a| a == "--checkpoint-every").unwrap();
    args[i + 1] = "1".into();
    let mut resume = args.clone();
    resume.insert(1, "--resume".into());
    let (mut prev, mut stale) = (0u64, 0usize);
    for k in 0..8u64 {
        let mut child = spawn(if k == 0 { &args } else { &resume });
        let logged = wait_for_step(&mut child, &run, prev + 3 + 4 * k);
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success(), "the run finished before it could be killed");
        let (_, state) = load_checkpoint(&run);
        assert!(state.step >= prev && state.step + 2 >= logged.min(last_step(&run)), "checkpoint at step {} after a kill at {logged}", state.step);
        prev = state.step;
        stale += temp_files(&run).len();
    }
    eprintln!("8 kills left {stale} temporary files behind in total");
    let out = run_ok(&resume);
    assert!(text(&out.stdout).contains(&format!("trained {STEPS} steps")), "{}", text(&out.stdout));
    assert_eq!(temp_files(&run), Vec::<String>::new(), "stale temporary files survived the resume");
    assert_same_run(&run, want);
}

fn temp_files(run: &Path) -> Vec<String> {
    std::fs::read_dir(run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect()
}

#[test]
fn sigint_saves_a_checkpoint_exits_130_and_resumes_exactly() {
    let want = reference();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("interrupted");
    let args = train_args(&run);
    let mut child = spawn(&args);
    // Past the first periodic checkpoint and not on a checkpoint step, so the interrupt
    // checkpoint is not one the loop would have written anyway.
    wait_for_step(&mut child, &run, 37);
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < DEADLINE, "no exit after SIGINT");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (_, state) = load_checkpoint(&run);
    let logged = last_step(&run);
    assert!(logged < STEPS, "the run ended before the interrupt");
    assert_eq!(state.step, logged, "the interrupt checkpoint is not at the last logged step");
    assert!(stderr.contains(&format!("interrupted at step {logged}: checkpoint saved in {}", run.display())), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let state_json: TrainState = serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state_json, state, "state.json disagrees with the checkpoint");

    let mut resume = args.clone();
    resume.insert(1, "--resume".into());
    let out = run_ok(&resume);
    assert!(text(&out.stdout).contains(&format!("trained {STEPS} steps")), "{}", text(&out.stdout));
    assert_same_run(&run, want);
}

#[test]
fn a_non_finite_loss_stops_training_naming_the_step_and_keeps_a_finite_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("diverged");
    let mut args = train_args(&run);
    // Plain SGD at an absurd rate and no clipping: the loss overflows within a few steps.
    args.extend(["--optimizer", "sgd", "--lr", "1e30", "--clip-grad", "0"].map(String::from));
    let out = convlm().args(&args).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let step: u64 = err
        .split("training diverged at step ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no step in the error: {err}"));
    assert!(err.contains("is not finite"), "{err}");
    // The failing step's loss was never logged; the log stops at the step before.
    assert_eq!(last_step(&run), step - 1, "{err}");
    let (model, state) = load_checkpoint(&run);
    assert_eq!(state.step, step - 1, "the last good checkpoint is not the step before the divergence");
    assert!(err.contains(&format!("the last good checkpoint (step {}) is in {}", state.step, run.display())), "{err}");
    for p in model.params().params() {
        assert!(p.value.all_finite(), "parameter {} of the saved checkpoint is not finite", p.name);
    }
    // The exported weights load too.
    let dir_ = RunDir::new(&run);
    let config = dir_.load_config().unwrap();
    let tok = dir_.load_tokenizer().unwrap();
    let exported = dir_.load_model("model.safetensors", &config, &tok).unwrap();
    assert_eq!(exported.state_dict().len(), model.state_dict().len());

    // The checkpoint is the exact state after step - 1: resuming diverges at the same step.
    let mut resume = args.clone();
    resume.insert(1, "--resume".into());
    let again = convlm().args(&resume).output().unwrap();
    let err2 = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{err2}");
    assert!(err2.contains(&format!("training diverged at step {step}:")), "{err2}");
}

#[test]
fn an_update_that_overflows_keeps_the_exact_state_before_it() {
    // Plain SGD whose rate jumps by 1e38 after step 12 (a step schedule), past the largest
    // f32: the gradients stay finite but every nonzero update overflows the parameters in
    // place, whatever the gradients' bits. Checkpoints every 5 steps: the
    // last good state (after step 12) is rebuilt by replaying steps 11 and 12 from the
    // checkpoint at step 10, and must equal the state of a run stopped at step 12.
    let dir = tempfile::tempdir().unwrap();
    let base = |run: &Path, steps: &str| -> Vec<String> {
        let mut a = train_args(run);
        let i = a.iter().position(|x| x == "--steps").unwrap();
        a[i + 1] = steps.into();
        let i = a.iter().position(|x| x == "--checkpoint-every").unwrap();
        a[i + 1] = "5".into();
        a.extend(["--optimizer", "sgd", "--lr", "10", "--clip-grad", "0", "--schedule", "step"].map(String::from));
        a.extend(["--set", "schedule.step_size=12", "--set", "schedule.gamma=1e38"].map(String::from));
        a
    };
    let run = dir.path().join("overflow");
    let out = convlm().args(base(&run, "40")).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("training diverged at step 13: parameter ") && err.contains("after the update is not finite"), "{err}");
    assert!(err.contains("the last good checkpoint (step 12)"), "{err}");
    let (model, state) = load_checkpoint(&run);
    assert_eq!(state.step, 12);
    // The same run stopped cleanly after step 12.
    let clean = dir.path().join("clean");
    run_ok(&base(&clean, "12"));
    let (want, _) = load_checkpoint(&clean);
    for (p, q) in model.params().params().iter().zip(want.params().params()) {
        assert!(p.value.data() == q.value.data(), "parameter {} differs from the uninterrupted run's after step 12", p.name);
    }
}
