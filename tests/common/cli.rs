//! Running the `convlm` binary from integration tests: one way to start it (two threads,
//! whatever the machine), read its output and check how it failed.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test, with `CONVLM_THREADS=2` so results do not depend on the machine.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_convlm"));
    c.env("CONVLM_THREADS", "2");
    c
}

/// Runs the binary to completion.
pub fn convlm<S: AsRef<OsStr>>(args: &[S]) -> Output {
    command().args(args).output().expect("convlm runs")
}

/// Bytes of stdout or stderr as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A command's stdout as text.
pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

/// A command's stderr as text.
pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 test path")
}

/// `../shared/<rel>` as a string argument.
pub fn shared_arg(rel: &str) -> String {
    s(&super::shared(rel)).to_string()
}

/// Runs the binary and asserts it succeeded, showing its output otherwise.
pub fn succeeds<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let out = convlm(args);
    assert!(out.status.success(), "convlm {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    out
}

/// Asserts exit code `code` with stderr containing every one of `parts` and no panic;
/// returns stderr.
pub fn fails<S: AsRef<OsStr> + std::fmt::Debug>(code: i32, args: &[S], parts: &[&str]) -> String {
    let out = convlm(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "convlm {args:?}\nstdout: {}\nstderr: {err}", text(&out.stdout));
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    for p in parts {
        assert!(err.contains(p), "convlm {args:?}: stderr lacks `{p}`:\n{err}");
    }
    err
}

/// `train --data DATA --out OUT -q` followed by `extra`'s whitespace-separated words (flags
/// and `--set key=value` pairs, none with spaces).
pub fn train_args(data: &Path, out: &Path, extra: &str) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--data", s(data), "--out", s(out), "-q"].map(String::from).to_vec();
    args.extend(extra.split_whitespace().map(String::from));
    args
}
