//! The command line's edges (docs/reliability.md, "Limits" and "Flags"): every bad flag,
//! special file, absurd size and oversubscribed thread count gets a clear message and exit
//! code — never a panic, an abort or a hang — and the help says what every flag does.

mod common;

use common::cli::{command, convlm, fails, shared_arg, succeeds, text, train_args};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn names() -> String {
    shared_arg("data/names.txt")
}

/// A fresh output folder that must stay absent after a refused command.
fn out_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run").to_str().unwrap().to_string();
    (dir, out)
}

#[test]
fn numbers_in_flags_are_checked_with_the_flags_own_words() {
    let (_d, out) = out_dir();
    let data = names();
    let train =
        |extra: &[&'static str]| -> Vec<String> { ["train", "--data", &data, "--out", &out, "-q"].iter().chain(extra).map(|s| s.to_string()).collect() };
    fails(1, &train(&["--lr", "-1"]), &["invalid lr: must be a positive finite number, got -1"]);
    fails(2, &train(&["--lr", "nan"]), &["invalid value 'nan' for '--lr <LR>': nan is not a finite number"]);
    fails(2, &train(&["--epochs", "nan"]), &["'--epochs <EPOCHS>': nan is not a positive finite number"]);
    fails(1, &train(&["--epochs", "1e12"]), &["invalid epochs: 1000000000000 epochs are", "at most 1000000000 steps"]);
    fails(1, &train(&["--warmup", "500", "--steps", "100"]), &["invalid warmup: 500 warm-up steps are more than the run's 100 steps"]);
    fails(1, &train(&["--clip-grad=-1"]), &["invalid clip-grad: must be a positive number, or 0 to disable clipping, got -1"]);
    fails(1, &train(&["--clip-grad", "-1"]), &["invalid clip-grad"]);
    fails(1, &train(&["--weight-decay", "-0.5"]), &["invalid weight-decay"]);
    fails(1, &train(&["--ema-decay", "1"]), &["invalid ema-decay: must be in [0, 1) (0: no average), got 1"]);
    fails(
        1,
        &train(&["--set", "unknown.key=1"]),
        &["`unknown.key`: the config has no section `unknown` (it has: data, model, optimizer, schedule, seed, train)"],
    );
    fails(1, &train(&["--set", "model.chanels=1"]), &["unknown field `chanels`", "`channels`"]);
    assert!(!Path::new(&out).exists(), "a refused run created {out}");
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let (_d, out) = out_dir();
    let data = names();
    let train =
        |extra: &[&'static str]| -> Vec<String> { ["train", "--data", &data, "--out", &out, "-q"].iter().chain(extra).map(|s| s.to_string()).collect() };
    fails(1, &train(&["--batch-size", "100000000"]), &["not enough memory: training needs about", "batch of 100000000", "are available; lower --batch-size"]);
    fails(1, &train(&["--set", "model.channels=100000000"]), &["not enough memory", "parameters"]);
    fails(1, &train(&["--set", "model.channels=18446744073709551615"]), &["parameter `convs.0.weight` of shape [18446744073709551615, 24, 2] is too large"]);
    assert!(!Path::new(&out).exists());
}

#[cfg(target_os = "linux")]
#[test]
fn special_files_are_refused_or_bounded_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = dir.path().join("run");
    let started = Instant::now();
    // A FIFO without a writer would block a plain read forever: the child is given a deadline.
    let mut child = Command::new(env!("CARGO_BIN_EXE_convlm"))
        .args(["train", "--data", fifo.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("convlm train --data FIFO hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("pipe: is not a regular file (a FIFO)") && err.contains("data.allow_special_files"), "{err}");
    // Allowed, /dev/zero is read up to the limit, then refused (never until memory runs out).
    fails(
        1,
        &[
            "train",
            "--data",
            "/dev/zero",
            "--out",
            out.to_str().unwrap(),
            "-q",
            "--set",
            "data.allow_special_files=true",
            "--set",
            "data.special_file_limit=1000000",
        ],
        &["/dev/zero: is not a regular file and holds more than data.special_file_limit = 1000000 bytes"],
    );
    fails(1, &["train", "--data", "/dev/zero", "--out", out.to_str().unwrap(), "-q"], &["/dev/zero: is not a regular file (a character device)"]);
}

#[test]
fn more_threads_than_cores_warn_and_are_capped() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let asked = (cores + 3).to_string();
    let (_d, out) = out_dir();
    let args = ["train", "--data", &names(), "--out", &out, "--steps", "3", "--eval-every", "3", "--threads", &asked, "-q", "--set", "model.channels=8"];
    let o = convlm(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let want = format!("warning: {asked} threads requested but this machine has {cores} cores: using {cores}");
    assert!(text(&o.stderr).contains(&want), "{}", text(&o.stderr));
    let o = convlm(&["bench", "--workload", "w2", "--steps", "1", "--warmup", "0", "--threads", &asked]);
    assert!(o.status.success() && text(&o.stderr).contains(&want), "{}", text(&o.stderr));
    let line: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    assert_eq!(line["threads"], cores);
}

/// The pool is sized before the data is read: encoding a stream runs on the pool, and
/// built there first it kept every core whatever `--threads` said.
#[test]
fn the_threads_asked_for_are_the_threads_used_although_the_data_is_encoded_first() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("skipped: one core, so every pool has one thread");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 2] {
        let out = dir.path().join(format!("run{threads}"));
        let extra = format!("--dataset stream --steps 2 --eval-every 2 --set train.eval_batches=1 --set model.channels=8 --threads {threads}");
        let mut args = train_args(Path::new(&shared_arg("data/tinyshakespeare.txt")), &out, &extra);
        args.retain(|a| a != "-q");
        // A cache of its own: the text is encoded now, not read back encoded.
        let o = command().args(&args).env("CONVLM_CACHE", dir.path().join(format!("cache{threads}"))).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let want = format!("training examples, {threads} thread{};", if threads == 1 { "" } else { "s" });
        assert!(text(&o.stderr).contains(&want), "wanted `{want}` in:\n{}", text(&o.stderr));
    }
}

#[test]
fn help_describes_every_flag_with_its_default() {
    let train = text(&convlm(&["train", "--help"]).stdout);
    for (flag, words) in [
        ("--batch-size", "Sequences per optimizer step [default: 32]"),
        ("--weight-decay", "Weight decay of conv and linear weights"),
        ("--seed", "Seeds the initialisation, the split and the batch order [default: 1337]"),
        ("--lr", "Base learning rate [default: 0.003]"),
        ("--force", "renamed to <out>.old-N"),
    ] {
        assert!(train.contains(flag) && train.contains(words), "train --help lacks {flag}: {words}\n{train}");
    }
    let sample = text(&convlm(&["sample", "--help"]).stdout);
    for words in ["The run directory to sample from", "Use the last checkpoint", "Sample only among the K most likely tokens", "[default: 256]", "nucleus"] {
        assert!(sample.contains(words), "sample --help lacks `{words}`\n{sample}");
    }
    let eval = text(&convlm(&["eval", "--help"]).stdout);
    assert!(eval.contains("The run directory to evaluate") && eval.contains("[default: val]"), "{eval}");
}

#[test]
fn shape_refuses_what_pytorch_refuses() {
    fails(
        1,
        &["shape", "--length", "5", "--kernel", "3", "--stride", "2", "--transposed", "--output-padding", "3"],
        &["output_padding (3) must be smaller than stride (2) or dilation (1)"],
    );
    let o = convlm(&["shape", "--length", "5", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed", "--output-padding", "1"]);
    assert!(o.status.success() && text(&o.stdout).contains("= 10"), "{}", text(&o.stdout));
}

#[test]
fn grid_samples_are_separated_and_a_trained_tokenizer_can_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let shakespeare = common::shared("data/tinyshakespeare.txt");
    let run = dir.path().join("grid");
    succeeds(&train_args(
        &shakespeare,
        &run,
        "--model pixelcnn --steps 2 --eval-every 2 --set data.grid_width=6 --set data.grid_height=3 --set train.eval_batches=1",
    ));
    let samples = text(&convlm(&["sample", "--run", run.to_str().unwrap(), "-n", "3", "--seed", "1"]).stdout);
    assert_eq!(samples.lines().filter(|l| *l == "------").count(), 2, "two rules between three grids:\n{samples}");

    // `convlm tokenizer train` output used as the run's tokenizer.
    let tok = dir.path().join("tok.json");
    let o = convlm(&["tokenizer", "train", "--data", shakespeare.to_str().unwrap(), "--vocab-size", "300", "--out", tok.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let run = dir.path().join("bpe");
    let bpe = format!("--dataset stream --tokenizer {} --steps 2 --eval-every 2 --set model.channels=8 --set train.eval_batches=1", tok.to_str().unwrap());
    succeeds(&train_args(&shakespeare, &run, &bpe));
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("tokenizer.json")).unwrap()).unwrap();
    let given: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tok).unwrap()).unwrap();
    assert_eq!(saved["model"]["vocab"], given["model"]["vocab"], "the run did not use the given tokenizer");
}
