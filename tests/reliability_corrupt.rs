//! Damaged run directories (docs/reliability.md): every truncated or corrupted file, every
//! mismatch between config, tokenizer and weights, and every missing required file is an
//! error that names the file, with exit code 1 and never a panic — through the CLI
//! (`sample`, `eval`, `train --resume`) and through the library.

mod common;

use std::path::Path;

use common::cli::{convlm, s, text};
use common::runs::{base_run, copy_run};
use convlm::io::load_safetensors;
use convlm::run::RunDir;
use convlm::Error;
use serde_json::Value;

/// Runs convlm, expects exit code 1 without a panic and an error naming `file`; returns stderr.
fn fails_naming(args: &[&str], file: &Path) -> String {
    let out = convlm(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "convlm {args:?}: expected exit code 1\nstdout: {}\nstderr: {err}", text(&out.stdout));
    assert!(!err.contains("panicked"), "convlm {args:?} panicked: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "convlm {args:?}: the error does not name {}:\n{err}", file.display());
    err
}

fn sample_last(run: &Path) -> Vec<String> {
    ["sample", "--run", s(run), "--last", "-n", "1", "--max-tokens", "5"].map(String::from).to_vec()
}

fn resume(run: &Path) -> Vec<String> {
    ["train", "--resume", "--out", s(run), "--steps", "40", "-q"].map(String::from).to_vec()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Length of the JSON header of a safetensors file (after the 8-byte length).
fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Expects a library error of the BadFile or Io kind naming `path`.
fn names_path(r: convlm::Result<impl Sized>, path: &Path, what: &str) {
    match r {
        Ok(_) => panic!("{what}: loaded without error"),
        Err(e @ (Error::BadFile { .. } | Error::Io { .. })) => assert!(e.to_string().contains(s(path)), "{what}: {e}"),
        Err(e) => panic!("{what}: wrong error kind: {e}"),
    }
}

#[test]
fn truncated_model_safetensors_is_an_error_naming_it() {
    let (_d, run) = copy_run();
    let model = run.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    let h = header_len(&bytes);
    for len in [0, 5, 8, 8 + h / 2, 8 + h, 8 + h + 3, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&model, &bytes[..len]).unwrap();
        let err = fails_naming(&args(&sample_last(&run)), &model);
        assert!(err.contains("truncated") || err.contains("too short") || err.contains("not a valid safetensors"), "length {len}: {err}");
        fails_naming(&["eval", "--run", s(&run), "--last"], &model);
    }
}

#[test]
fn every_truncation_of_a_weights_file_is_an_error_never_a_partial_load() {
    let (_d, run) = copy_run();
    let model = run.join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    let h = header_len(&bytes);
    let lens = (0..8 + h + 64).chain((8 + h + 64..bytes.len()).step_by(61));
    for len in lens {
        std::fs::write(&model, &bytes[..len]).unwrap();
        names_path(load_safetensors(&model), &model, &format!("prefix of {len} bytes"));
    }
}

#[test]
fn corrupted_safetensors_headers_are_errors_naming_the_file() {
    let (_d, run) = copy_run();
    let model = run.join("model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let h = header_len(&good);
    let header = String::from_utf8(good[8..8 + h].to_vec()).unwrap();
    let with_header = |new: &str| {
        assert_eq!(new.len(), h);
        let mut b = good.clone();
        b[8..8 + h].copy_from_slice(new.as_bytes());
        b
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("header length u64::MAX", [&u64::MAX.to_le_bytes()[..], &good[8..]].concat()),
        ("header length past the end", [&((good.len() as u64) - 4).to_le_bytes()[..], &good[8..]].concat()),
        ("not JSON", with_header(&header.replacen('{', "x", 1))),
        ("JSON array", with_header(&format!("[{}]", &header[1..h - 1]))),
        ("dtype F16", with_header(&header.replacen("\"F32\"", "\"F16\"", 1))),
        ("shape disagrees with data", with_header(&header.replacen("[30,24]", "[31,24]", 1))),
        ("offsets overlap", with_header(&header.replacen("[2880,5952]", "[2000,5952]", 1))),
        ("renamed tensor", with_header(&header.replacen("convs.0.weight", "convs.9.weight", 1))),
        ("zeroed header", with_header(&" ".repeat(h))),
    ];
    cases.push(("random bytes", (0..good.len()).map(|i| (i * 7919 % 251) as u8).collect()));
    for (what, bytes) in cases {
        assert_ne!(bytes, good, "{what}: the corruption did nothing");
        std::fs::write(&model, &bytes).unwrap();
        let err = fails_naming(&args(&sample_last(&run)), &model);
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

#[test]
fn every_flipped_header_byte_loads_or_is_an_error_naming_the_file() {
    // Exhaustive over the header: flipping one bit may leave a valid file (a digit of the
    // metadata's step, a space of the padding turned into a tab...), but must never panic
    // or produce an error that does not name the file.
    let (_d, run) = copy_run();
    let dir = RunDir::new(&run);
    let config = dir.load_config().unwrap();
    let tok = dir.load_tokenizer().unwrap();
    let model = run.join("model.safetensors");
    let good = std::fs::read(&model).unwrap();
    let h = header_len(&good);
    let mut errors = 0;
    for i in 0..8 + h {
        for bit in [0x01u8, 0x20, 0x80] {
            let mut b = good.clone();
            b[i] ^= bit;
            std::fs::write(&model, &b).unwrap();
            match dir.load_model("model.safetensors", &config, &tok) {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().contains(s(&model)), "byte {i} ^ {bit:#x}: {e}");
                }
            }
        }
    }
    assert!(errors > 2 * (8 + h), "only {errors} of {} flips were detected", 3 * (8 + h));
}

#[test]
fn a_corrupted_checkpoint_stops_resume_with_an_error_naming_it() {
    let (_d, run) = copy_run();
    let ckpt = run.join("optimizer.safetensors");
    let good = std::fs::read(&ckpt).unwrap();
    let h = header_len(&good);
    // Overwrite a header byte with a quote; start a third of the way in and skip bytes that
    // already are quotes (overwriting a quote with a quote would change nothing).
    let mut flipped = good.clone();
    let pos = (8 + h / 3..8 + h).find(|&i| good[i] != b'"').unwrap();
    flipped[pos] = b'"';
    let mut no_state = good.clone();
    let header = String::from_utf8(good[8..8 + h].to_vec()).unwrap();
    let renamed = header.replacen("train_state", "train_stat_", 1);
    no_state[8..8 + h].copy_from_slice(renamed.as_bytes());
    for (what, bytes) in [("truncated", good[..good.len() * 2 / 3].to_vec()), ("flipped", flipped), ("empty", Vec::new()), ("no train state", no_state)] {
        std::fs::write(&ckpt, &bytes).unwrap();
        let err = fails_naming(&args(&resume(&run)), &ckpt);
        assert!(!err.contains("trained"), "{what}: {err}");
    }
    // Nothing was overwritten by the failed resumes.
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), std::fs::read(base_run().join("model.safetensors")).unwrap());
    // Weights of another run of the same shapes but another optimizer are refused too.
    std::fs::write(&ckpt, &good).unwrap();
    let cfg_path = run.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["optimizer"]["kind"] = "sgd".into();
    cfg["optimizer"]["momentum"] = 0.9.into();
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    fails_naming(&args(&resume(&run)), &ckpt);
}

#[test]
fn a_config_of_another_family_is_an_error_naming_the_weights_file() {
    let (_d, run) = copy_run();
    let cfg_path = run.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["model"] = serde_json::json!({"family": "mlp"});
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    // best.safetensors (sample's default), model.safetensors (--last), the checkpoint (resume).
    let err = fails_naming(&["sample", "--run", s(&run), "-n", "1"], &run.join("best.safetensors"));
    assert!(err.contains("holds a dilated model but config.json describes a mlp model"), "{err}");
    fails_naming(&args(&sample_last(&run)), &run.join("model.safetensors"));
    fails_naming(&["eval", "--run", s(&run)], &run.join("best.safetensors"));
    fails_naming(&args(&resume(&run)), &run.join("optimizer.safetensors"));

    // Weights without convlm's metadata (e.g. saved by PyTorch): the tensor names disagree.
    let model = run.join("model.safetensors");
    let (tensors, _) = load_safetensors(&model).unwrap();
    convlm::io::save_safetensors(&model, &tensors, None).unwrap();
    let err = fails_naming(&args(&sample_last(&run)), &model);
    assert!(err.contains("tensor"), "{err}");
}

#[test]
fn a_tokenizer_of_another_vocabulary_is_an_error_naming_the_weights_file() {
    let (_d, run) = copy_run();
    let tok_path = run.join("tokenizer.json");
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    for (what, delta) in [("one token fewer", -1i32), ("one token more", 1)] {
        let mut t = good.clone();
        let vocab = t["vocab"].as_array_mut().unwrap();
        if delta < 0 {
            vocab.pop();
        } else {
            vocab.push("é".into());
        }
        let n = vocab.len();
        std::fs::write(&tok_path, serde_json::to_string(&t).unwrap()).unwrap();
        let err = fails_naming(&args(&sample_last(&run)), &run.join("model.safetensors"));
        assert!(err.contains(&format!("vocabulary of 30 tokens but tokenizer.json has {n}")), "{what}: {err}");
        fails_naming(&args(&resume(&run)), &run.join("optimizer.safetensors"));
    }
    // Not a tokenizer at all, or torn: the error names tokenizer.json.
    for bad in ["", "{\"type\": \"char\", \"version\": 1", "{\"type\": \"char\", \"version\": 7, \"vocab\": []}", "[1, 2, 3]"] {
        std::fs::write(&tok_path, bad).unwrap();
        fails_naming(&args(&sample_last(&run)), &tok_path);
        fails_naming(&args(&resume(&run)), &tok_path);
    }
}

#[test]
fn damaged_config_json_is_an_error_naming_it() {
    let (_d, run) = copy_run();
    let cfg_path = run.join("config.json");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    let v: Value = serde_json::from_str(&good).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = v.clone();
        f(&mut c);
        serde_json::to_string_pretty(&c).unwrap()
    };
    let cases = [
        ("torn", good[..good.len() / 2].to_string()),
        ("empty", String::new()),
        ("unknown field", with(&|c| c["train"]["stepz"] = 3.into())),
        ("unknown family", with(&|c| c["model"]["family"] = "transformer".into())),
        ("eval_every 0", with(&|c| c["train"]["eval_every"] = 0.into())),
        ("batch_size 0", with(&|c| c["train"]["batch_size"] = 0.into())),
        ("negative lr", with(&|c| c["optimizer"]["lr"] = (-1.0).into())),
        ("grid data for a sequence model", with(&|c| c["data"]["kind"] = "grid".into())),
    ];
    for (what, text) in cases {
        std::fs::write(&cfg_path, &text).unwrap();
        let err = fails_naming(&args(&sample_last(&run)), &cfg_path);
        fails_naming(&["eval", "--run", s(&run)], &cfg_path);
        fails_naming(&args(&resume(&run)), &cfg_path);
        assert!(!err.is_empty(), "{what}");
    }
}

#[test]
fn each_required_file_missing_is_an_error_naming_it() {
    for (file, commands) in [
        ("config.json", &["sample", "eval", "resume"][..]),
        ("tokenizer.json", &["sample", "eval", "resume"][..]),
        ("model.safetensors", &["sample"][..]),
        ("optimizer.safetensors", &["resume"][..]),
    ] {
        let (_d, run) = copy_run();
        let path = run.join(file);
        std::fs::remove_file(&path).unwrap();
        for c in commands {
            let a = match *c {
                "sample" => sample_last(&run),
                "eval" => ["eval", "--run", s(&run), "--last"].map(String::from).to_vec(),
                _ => resume(&run),
            };
            let err = fails_naming(&args(&a), &path);
            assert!(err.contains("missing"), "{file} / {c}: {err}");
        }
    }
    // A run directory that does not exist at all.
    let gone = std::env::temp_dir().join("convlm-no-such-run-dir");
    fails_naming(&["sample", "--run", s(&gone)], &gone.join("config.json"));
    // The training data moved away: resume names the data path.
    let (_d, run) = copy_run();
    let cfg_path = run.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let moved = run.join("moved-names.txt");
    cfg["data"]["path"] = s(&moved).into();
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = fails_naming(&args(&resume(&run)), &moved);
    // The operating system's reason is printed once, not once per error layer.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn optional_files_may_be_missing_and_are_rewritten() {
    // state.json, metrics.jsonl, best.safetensors and model.safetensors are derived: resume
    // reads only config.json, tokenizer.json and optimizer.safetensors.
    let (_d, run) = copy_run();
    for f in ["state.json", "metrics.jsonl", "best.safetensors", "model.safetensors"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    let out = convlm(&args(&resume(&run)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("trained 40 steps"), "{}", text(&out.stdout));
    for f in ["state.json", "metrics.jsonl", "best.safetensors", "model.safetensors"] {
        assert!(run.join(f).is_file(), "{f} was not rewritten");
    }
    // sample falls back from best.safetensors to model.safetensors.
    std::fs::remove_file(run.join("best.safetensors")).unwrap();
    let out = convlm(&["sample", "--run", s(&run), "-n", "2", "--max-tokens", "5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn metrics_log_a_torn_last_line_is_dropped_a_bad_middle_line_is_an_error() {
    let (_d, run) = copy_run();
    let m = run.join("metrics.jsonl");
    let good = std::fs::read_to_string(&m).unwrap();
    // Torn last line: resume goes on, the log is whole again.
    std::fs::write(&m, format!("{good}{{\"step\":31,\"lo")).unwrap();
    let out = convlm(&args(&resume(&run)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = convlm::run::metrics::read_records(&m).unwrap();
    let steps: Vec<u64> = records.iter().filter(|r| r.get("loss").is_some()).map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=40).collect::<Vec<_>>());
    assert!(std::fs::read_to_string(&m).unwrap().lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "the torn line survived");
    // A bad line that is not the last is corruption, not a torn write: an error naming the
    // file and line.
    let (_d2, run2) = copy_run();
    let m2 = run2.join("metrics.jsonl");
    let mut lines: Vec<&str> = good.lines().collect();
    lines[3] = "{\"step\":4,\"loss\":";
    std::fs::write(&m2, lines.join("\n") + "\n").unwrap();
    let err = fails_naming(&args(&resume(&run2)), &m2);
    assert!(err.contains("line 4"), "{err}");
}
