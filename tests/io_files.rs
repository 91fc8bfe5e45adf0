//! Atomic writes and JSON files.

use convlm::io::{atomic_write, read_json, write_json};
use convlm::Error;
use serde::{Deserialize, Serialize};

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn atomic_write_creates_and_replaces_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    atomic_write(&path, b"first").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    atomic_write(&path, b"second, longer content").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second, longer content");
    atomic_write(&path, b"").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    assert_eq!(entries(dir.path()), ["state.json"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_ne!(mode & 0o044, 0, "not the temp file's private 0600 mode: {mode:o}");
    }
}

#[test]
fn atomic_write_errors_name_the_file_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("x.bin");
    match atomic_write(&path, b"data") {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("x.bin"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
    // Renaming over a directory fails after the temp file was written: it must be removed.
    let target = dir.path().join("adir");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"").unwrap();
    assert!(atomic_write(&target, b"data").is_err());
    assert_eq!(entries(dir.path()), ["adir"]);
}

#[test]
fn concurrent_atomic_writes_leave_one_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.bin");
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let path = &path;
            s.spawn(move || atomic_write(path, &vec![i; 100_000]).unwrap());
        }
    });
    let got = std::fs::read(&path).unwrap();
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().all(|&b| b == got[0]), "never a mix of two writes");
    assert_eq!(entries(dir.path()), ["m.bin"]);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct State {
    step: u64,
    lr: f32,
    name: String,
    rng: Vec<u32>,
}

#[test]
fn json_round_trip_is_pretty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let s = State { step: 12, lr: 0.001, name: "run \"a\"".into(), rng: vec![1, 2, 3] };
    write_json(&path, &s).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n  \"step\": 12"), "{text}");
    assert!(text.ends_with('\n'));
    assert_eq!(read_json::<State>(&path).unwrap(), s);
    assert_eq!(entries(dir.path()), ["state.json"]);
}

#[test]
fn json_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{\n  \"step\": 1,\n  \"lr\": oops\n}\n").unwrap();
    match read_json::<State>(&path) {
        Err(e @ Error::BadFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("config.json") && msg.contains("line 3") && msg.contains("column"), "{msg}");
        }
        other => panic!("expected BadFile, got {other:?}"),
    }
    std::fs::write(&path, "{\n  \"step\": \"twelve\"\n}").unwrap();
    let msg = read_json::<State>(&path).unwrap_err().to_string();
    assert!(msg.contains("config.json") && msg.contains("line 2"), "{msg}");
    std::fs::write(&path, "{\"step\": 1").unwrap();
    assert!(matches!(read_json::<State>(&path), Err(Error::BadFile { .. })));
}

#[test]
fn missing_json_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    match read_json::<State>(&path) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("absent.json"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
}
