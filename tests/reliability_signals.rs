//! Signals through the binary (docs/reliability.md, section 11): a closed stdout or stderr
//! never stops training, and ends the other commands quietly (never a panic); Ctrl-C stops
//! `eval` and `sample` within a bounded time with exit code 130 and no output. (`prepare` and
//! `tokenizer train` are in reliability_prepare.rs.) Deadlines are generous: they catch a
//! command that ignores Ctrl-C, not a slow machine.
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::{command, s, stderr, stdout, succeeds, text};
use common::process::{finish_within, send, spawn_with_cache, wait_for_sigint_handler};
use common::runs::{base_run, snapshot, NAMES};

const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the binary with stdout (or stderr) a pipe whose reader is already gone.
fn with_closed(stream: &str, args: &[&str]) -> std::process::Output {
    let mut c: Command = command();
    let mut child = c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Dropping our end closes the pipe: every write to it fails with EPIPE.
    match stream {
        "stdout" => drop(child.stdout.take()),
        _ => drop(child.stderr.take()),
    }
    finish_within(child, DEADLINE, &format!("{args:?} with a closed {stream}"))
}

#[test]
fn a_closed_stdout_or_stderr_never_stops_training() {
    let dir = tempfile::tempdir().unwrap();
    for stream in ["stdout", "stderr"] {
        let run = dir.path().join(stream);
        // Not quiet: samples and evaluations are printed (on stderr), the summary on stdout.
        let args = ["train", "--data", NAMES, "--out", s(&run), "--steps", "60", "--eval-every", "20", "--set", "model.channels=16"];
        let out = with_closed(stream, &args);
        assert_eq!(out.status.code(), Some(0), "closed {stream}: {}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["step"], 60, "closed {stream}: the run did not finish");
    }
}

#[test]
fn other_commands_end_quietly_on_a_closed_pipe() {
    let run = s(base_run());
    for args in [
        vec!["sample", "--run", run, "-n", "500"],
        vec!["eval", "--run", run],
        vec!["summary", "--config", "names-hierarchical"],
        vec!["shape", "--length", "10", "--kernel", "3"],
        vec!["plot", "--run", run],
        vec!["--help"],
    ] {
        let out = with_closed("stdout", &args);
        // Ended by SIGPIPE, as `cat` or `grep` would be, or done before the reader left.
        let quiet = out.status.signal() == Some(libc::SIGPIPE) || out.status.code() == Some(0);
        assert!(quiet, "{args:?}: {:?}\n{}", out.status, stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}

/// Starts `args`, sends Ctrl-C once its handler is in place, and expects exit code 130 with
/// nothing on stdout and `interrupted (Ctrl-C)` on stderr.
fn interrupted(args: &[&str], cache: &Path) -> String {
    let mut child = spawn_with_cache(args, Some(cache));
    wait_for_sigint_handler(&mut child, DEADLINE);
    send(&child, libc::SIGINT);
    let out = finish_within(child, DEADLINE, &format!("{args:?} after Ctrl-C"));
    assert_eq!(out.status.code(), Some(130), "{args:?}: {:?}\nstdout: {}\nstderr: {}", out.status, stdout(&out), stderr(&out));
    assert!(stdout(&out).is_empty(), "{args:?} printed after Ctrl-C: {}", stdout(&out));
    assert!(stderr(&out).contains("interrupted (Ctrl-C)") && !stderr(&out).contains("panicked"), "{}", stderr(&out));
    stderr(&out)
}

/// A stream run (no end-of-sample token: samples run to --max-tokens), trained briefly.
fn stream_run(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("stream");
    let data = dir.join("text.txt");
    std::fs::write(&data, std::fs::read_to_string(NAMES).unwrap().replace('\n', " ")).unwrap();
    succeeds(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--dataset",
        "stream",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "-q",
        "--set",
        "model.channels=8",
        "--set",
        "train.eval_batches=1",
    ]);
    run
}

#[test]
fn ctrl_c_stops_sample_and_eval_with_130_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = stream_run(dir.path());
    let before = snapshot(&run);
    // 2,000 samples of 100,000 tokens each: hours of work, stopped between tokens.
    let cache = dir.path().join("cache");
    interrupted(&["sample", "--run", s(&run), "-n", "2000", "--max-tokens", "100000"], &cache);
    // Scoring a text of 3 million lines, stopped between batches (or while it is prepared).
    let big = dir.path().join("big.txt");
    let names = std::fs::read_to_string(NAMES).unwrap();
    std::fs::write(&big, names.repeat(100)).unwrap();
    interrupted(&["eval", "--run", s(base_run()), "--data", s(&big)], &cache);
    assert_eq!(snapshot(&run), before, "an interrupted command wrote into the run");
}
