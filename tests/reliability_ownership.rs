//! Never lose a run (docs/reliability.md, "Run folders"): through the binary, a folder that is
//! not a run is never written into, an existing run is never overwritten, two writers never
//! share a run, and a run whose config, tokenizer or data changed says so.

mod common;

use common::cli::{fails, s, shared_arg, succeeds as ok, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn names() -> String {
    shared_arg("data/names.txt")
}

/// Expects exit code 1 with an error containing every one of `parts`; returns stderr.
fn fails_with(args: &[&str], parts: &[&str]) -> String {
    fails(1, args, parts)
}

/// A tiny run on `data`: 20 steps of a 16-channel dilated CNN.
fn train_args<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--out",
        out,
        "--steps",
        steps,
        "--eval-every",
        "10",
        "--batch-size",
        "8",
        "--set",
        "model.channels=16",
        "--set",
        "train.eval_batches=2",
        "-q",
    ]
}

/// Every file of a folder with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())).collect();
    v.sort();
    v
}

#[test]
fn a_folder_of_someone_elses_files_is_never_written_into() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("config.json"), "{\"mine\": true}").unwrap();
    std::fs::write(theirs.join("state.json"), "precious").unwrap();
    let before = snapshot(&theirs);
    let data = names();
    fails_with(&train_args(&data, s(&theirs), "20"), &[s(&theirs), "is not empty and is not a convlm run", "config.json, state.json", "--force"]);
    assert_eq!(snapshot(&theirs), before, "files were touched");
    // Model files without a run marker or checkpoint are not a run either.
    let weights = dir.path().join("weights");
    std::fs::create_dir(&weights).unwrap();
    std::fs::write(weights.join("model.safetensors"), "w").unwrap();
    std::fs::write(weights.join("best.safetensors"), "b").unwrap();
    let before = snapshot(&weights);
    fails_with(&train_args(&data, s(&weights), "20"), &["is not empty and is not a convlm run"]);
    assert_eq!(snapshot(&weights), before);
    // --force moves the folder aside, whole, and starts the run in a fresh one.
    let out = ok(&[train_args(&data, s(&theirs), "20"), vec!["--force"]].concat());
    assert!(text(&out.stderr).contains(&format!("moved what was in {} to {}.old-1", s(&theirs), s(&theirs))), "{}", text(&out.stderr));
    assert_eq!(snapshot(&PathBuf::from(format!("{}.old-1", s(&theirs)))), before_theirs());
    assert!(theirs.join("run.json").is_file() && theirs.join("optimizer.safetensors").is_file());

    fn before_theirs() -> Vec<(String, Vec<u8>)> {
        vec![("config.json".into(), b"{\"mine\": true}".to_vec()), ("state.json".into(), b"precious".to_vec())]
    }
}

#[test]
fn an_existing_run_is_resumed_or_moved_aside_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = names();
    ok(&train_args(&data, s(&run), "20"));
    let before = snapshot(&run);
    fails_with(&train_args(&data, s(&run), "20"), &["already holds a run", "--resume", "--force"]);
    assert_eq!(snapshot(&run), before);
    ok(&[train_args(&data, s(&run), "20"), vec!["--force"]].concat());
    let old = PathBuf::from(format!("{}.old-1", s(&run)));
    assert_eq!(snapshot(&old), before, "the old run moved aside whole");
}

/// Starts a long training in the background and waits until it logged a step.
fn start_long_run(run: &Path) -> Child {
    let data = names();
    let mut child = Command::new(env!("CARGO_BIN_EXE_convlm"))
        .args(train_args(&data, s(run), "100000"))
        .env("CONVLM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(true, |m| m.is_empty()) {
        assert!(Instant::now() < deadline, "the background run never logged a step");
        assert!(child.try_wait().unwrap().is_none(), "the background run stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn a_second_writer_gets_an_error_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("busy");
    let mut first = start_long_run(&run);
    let data = names();
    let started = Instant::now();
    fails_with(&[train_args(&data, s(&run), "20"), vec!["--force"]].concat(), &[s(&run), "is in use", "another convlm process"]);
    // Without --force too: the folder holds a run, but a running one ("pass --resume" would
    // send the user to the same refusal).
    fails_with(&train_args(&data, s(&run), "20"), &[s(&run), "is in use", "another convlm process"]);
    fails_with(&["train", "--resume", "--out", s(&run), "-q"], &["is in use"]);
    assert!(started.elapsed() < Duration::from_secs(60), "the second writer waited");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(run.join("run.json").is_file() && !PathBuf::from(format!("{}.old-1", s(&run))).exists(), "the busy run was moved");
}

#[test]
fn resume_keeps_the_runs_steps_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = names();
    ok(&train_args(&data, s(&run), "20"));
    // Nothing to do: the run is complete; no NaN, exit 0.
    let out = ok(&["train", "--resume", "--out", s(&run), "-q"]);
    let msg = text(&out.stdout);
    assert!(msg.contains("nothing to do") && msg.contains("already at step 20 of 20") && !msg.contains("NaN"), "{msg}");
    // Repeating the run's own flags is fine; more steps train on.
    let out = ok(&[train_args(&data, s(&run), "30"), vec!["--resume"]].concat());
    assert!(text(&out.stdout).contains("trained 30 steps"), "{}", text(&out.stdout));
    // A flag that would change the run is refused, naming the setting and both values.
    fails_with(
        &["train", "--resume", "--out", s(&run), "--lr", "0.5", "-q"],
        &["optimizer.lr 0.003", "0.5", "--steps, --epochs, --time-limit, --threads, --checkpoint-every and --device"],
    );
    fails_with(&["train", "--resume", "--out", s(&run), "--model", "wavenet", "-q"], &["model.family \"dilated\" -> \"wavenet\""]);
    fails_with(&["train", "--resume", "--out", s(&run), "--steps", "10", "-q"], &["already at step 30"]);
    fails_with(&["train", "--resume", "--out", s(&dir.path().join("none")), "-q"], &["holds no run to resume"]);
}

#[test]
fn a_changed_tokenizer_config_or_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("names.txt");
    std::fs::copy(names(), &data).unwrap();
    let run = dir.path().join("run");
    ok(&train_args(s(&data), s(&run), "20"));

    // tokenizer.json swapped for another of the same size: two characters trade ids.
    let tok_path = run.join("tokenizer.json");
    let good_tok = std::fs::read_to_string(&tok_path).unwrap();
    let mut tok: serde_json::Value = serde_json::from_str(&good_tok).unwrap();
    tok["vocab"].as_array_mut().unwrap().swap(10, 11);
    std::fs::write(&tok_path, serde_json::to_string_pretty(&tok).unwrap()).unwrap();
    for args in
        [vec!["sample", "--run", s(&run), "-n", "1"], vec!["eval", "--run", s(&run)], vec!["train", "--resume", "--out", s(&run), "--steps", "30", "-q"]]
    {
        fails_with(&args, &[s(&tok_path), "is not the tokenizer this run was trained with"]);
    }
    std::fs::write(&tok_path, &good_tok).unwrap();

    // config.json of another run (same family and sizes, another learning rate).
    let cfg_path = run.join("config.json");
    let good_cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&good_cfg).unwrap();
    cfg["optimizer"]["lr"] = 0.01.into();
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    for args in [vec!["sample", "--run", s(&run), "-n", "1"], vec!["train", "--resume", "--out", s(&run), "--steps", "30", "-q"]] {
        fails_with(&args, &[s(&cfg_path), "is not the config this run was started with"]);
    }
    std::fs::write(&cfg_path, &good_cfg).unwrap();

    // The data file changed (same size): resume and eval refuse, unless told; sample leaves
    // its samples unmarked, with a warning.
    let original = std::fs::read(&data).unwrap();
    let mut changed = original.clone();
    changed[0] = if changed[0] == b'x' { b'y' } else { b'x' };
    std::fs::write(&data, &changed).unwrap();
    fails_with(
        &["train", "--resume", "--out", s(&run), "--steps", "30", "-q"],
        &["the data changed since this run was trained", "has other content (same size)", "--allow-data-change"],
    );
    fails_with(&["eval", "--run", s(&run)], &["the data changed since this run was trained"]);
    let out = ok(&["eval", "--run", s(&run), "--allow-data-change"]);
    assert!(text(&out.stderr).contains("warning: the data changed since training"), "{}", text(&out.stderr));
    let out = ok(&["sample", "--run", s(&run), "-n", "2"]);
    assert!(text(&out.stderr).contains("samples are not marked in-train / new"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().all(|l| !l.ends_with("in-train") && !l.ends_with(" new")), "{}", text(&out.stdout));
    let out = ok(&["train", "--resume", "--out", s(&run), "--steps", "30", "--allow-data-change", "-q"]);
    assert!(text(&out.stderr).contains("warning: the data changed since training"), "{}", text(&out.stderr));
    std::fs::write(&data, &original).unwrap();
}

#[test]
fn runs_are_read_back_from_any_folder_and_score_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("here");
    std::fs::create_dir(&here).unwrap();
    std::fs::copy(names(), here.join("names.txt")).unwrap();
    // Trained with a relative data path from `here`…
    let out =
        Command::new(env!("CARGO_BIN_EXE_convlm")).current_dir(&here).args(train_args("names.txt", "run", "20")).env("CONVLM_THREADS", "2").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // …and evaluated and resumed from elsewhere.
    let run = here.join("run");
    let e = text(&ok(&["eval", "--run", s(&run), "--split", "test"]).stdout);
    assert!(e.starts_with("split test: loss "), "{e}");
    ok(&["train", "--resume", "--out", s(&run), "--steps", "25", "-q"]);
    // `eval --data FILE` scores every line of another file with the run's tokenizer.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "anna\nbob\ncarla\n").unwrap();
    let e = text(&ok(&["eval", "--run", s(&run), "--data", s(&other)]).stdout);
    assert!(e.starts_with(&format!("{}: loss ", s(&other))) && e.contains("(15 tokens)"), "{e}");
}
