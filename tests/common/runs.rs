//! A small trained run shared by the tests of one test binary: trained once, copied for each
//! test that changes it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::cli::{convlm, text};

/// ../shared/data/names.txt.
pub const NAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/names.txt");

/// A small trained run on names (30 steps of a 16-channel dilated CNN, one evaluation: every
/// file present), made once per test binary.
pub fn base_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("base");
        let out = convlm(&[
            "train",
            "--data",
            NAMES,
            "--out",
            run.to_str().unwrap(),
            "--steps",
            "30",
            "--eval-every",
            "30",
            "--batch-size",
            "16",
            "--seed",
            "2",
            "-q",
            "--set",
            "model.channels=16",
            "--set",
            "train.eval_batches=2",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (dir, run)
    })
    .1
}

/// A private copy of the base run, as `<tempdir>/run`.
pub fn copy_run() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    for e in std::fs::read_dir(base_run()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), run.join(e.file_name())).unwrap();
    }
    (dir, run)
}

/// Every file of a folder with its bytes, sorted by name.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}
