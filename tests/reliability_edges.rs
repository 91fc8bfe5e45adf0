//! Rough edges a new user trips on (docs/reliability.md, section 12), through the binary:
//! help that lists every family and preset and describes every flag, presets tuned on a file
//! that ask for it, a preset's warm-up named as the preset's, suggestions that work, a plot
//! that survives a damaged metrics line, and samples that say what they cannot do.

mod common;

use std::path::Path;

use common::cli::{convlm, fails, s, stderr, stdout, succeeds, text};
use common::runs::{copy_run, NAMES};

/// Every option of a help text: (flag, whether it has a description).
fn described_flags(help: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = help.lines().skip_while(|l| !l.starts_with("Options:")).skip(1).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        // `--flag <X>  Description`, or the description on the next, deeper line; a default
        // alone (`[default: 5000]`) describes nothing.
        let words = |d: &str| !d.split('[').next().unwrap_or("").trim().is_empty();
        let same_line = trimmed.split_once("  ").is_some_and(|(_, d)| words(d));
        let next_line = lines.get(i + 1).is_some_and(|n| {
            let t = n.trim_start();
            !t.starts_with('-') && n.len() - t.len() > indent && words(t)
        });
        out.push((trimmed.split_whitespace().find(|w| w.starts_with("--")).unwrap_or(trimmed).to_string(), same_line || next_line));
    }
    out
}

#[test]
fn help_lists_every_family_and_preset_and_describes_every_flag() {
    let train = stdout(&succeeds(&["train", "--help"]));
    for family in convlm::models::FAMILIES {
        assert!(train.contains(family), "train --help does not list the family {family}");
    }
    for (preset, _) in convlm::run::config::PRESETS {
        assert!(train.contains(preset), "train --help does not list the preset {preset}");
    }
    for command in [&["train"][..], &["prepare"], &["sample"], &["eval"], &["plot"], &["summary"], &["shape"], &["bench"], &["tokenizer", "train"]] {
        let help = stdout(&succeeds(&[command, &["-h"]].concat()));
        let flags = described_flags(&help);
        assert!(flags.len() > 1, "{command:?}: no options found in\n{help}");
        for (flag, described) in flags {
            assert!(described, "convlm {} -h: {flag} has no description\n{help}", command.join(" "));
        }
    }
}

#[test]
fn a_preset_tuned_on_a_file_asks_for_it() {
    let dir = tempfile::tempdir().unwrap();
    for (preset, file) in [("names-best", "names.txt"), ("shakespeare-best", "tinyshakespeare.txt"), ("shakespeare-hyena", "tinyshakespeare.txt")] {
        let out = dir.path().join(preset);
        fails(1, &["train", "--config", preset, "--out", s(&out), "--steps", "1"], &[&format!("--config {preset} was tuned on {file}"), "--data"]);
        assert!(!out.exists(), "{preset}: a refused run wrote its folder");
    }
    // A preset not tuned on a file still trains on the built-in word list.
    let out = dir.path().join("dilated");
    succeeds(&["train", "--config", "names-dilated", "--out", s(&out), "--steps", "100", "--eval-every", "100", "-q", "--set", "model.channels=8"]);
}

#[test]
fn a_warm_up_from_a_preset_is_named_as_the_presets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let args = ["train", "--config", "names-dilated", "--data", NAMES, "--out", s(&out), "--steps", "50", "-q"];
    fails(1, &args, &["100 warm-up steps are more than the run's 50 steps", "come from --config names-dilated", "--warmup N"]);
    // Given on the command line, the warm-up is the user's own: no word about the preset.
    let err = fails(1, &[&args[..], &["--warmup", "60"]].concat(), &["60 warm-up steps are more than the run's 50 steps"]);
    assert!(!err.contains("come from"), "{err}");
}

#[test]
fn suggestions_after_training_name_only_splits_that_hold_examples() {
    let dir = tempfile::tempdir().unwrap();
    let base = "--steps 10 --eval-every 10 -q --set model.channels=8 --set train.eval_batches=1";
    let run = |name: &str, extra: &str| -> String {
        let out = dir.path().join(name);
        let args: Vec<String> = [
            vec!["train".to_string(), "--data".into(), NAMES.into(), "--out".into(), s(&out).into()],
            format!("{base} {extra}").split_whitespace().map(String::from).collect(),
        ]
        .concat();
        stdout(&succeeds(&args))
    };
    let with_test = run("with-test", "");
    assert!(with_test.contains("--split test"), "{with_test}");
    // nanoGPT's protocol: the last 10% held out for validation, no test split.
    let no_test = run("no-test", "--set data.split=tail --set data.splits.train=0.9 --set data.splits.val=0.1 --set data.splits.test=0.0");
    assert!(!no_test.contains("--split test") && no_test.contains("--split val"), "{no_test}");
    // Each suggestion works.
    let next = no_test.lines().find_map(|l| l.strip_prefix("next: ")).expect("a next: line");
    for command in next.split("   |   ") {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        succeeds(&args);
    }
}

#[test]
fn plot_skips_a_damaged_metrics_line_with_a_warning() {
    let (_d, run) = copy_run();
    let metrics = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "{\"step\":4,\"loss\":";
    std::fs::write(&metrics, lines.join("\n") + "\n").unwrap();
    std::fs::remove_file(run.join("loss.svg")).unwrap();
    let out = succeeds(&["plot", "--run", s(&run)]);
    assert!(stderr(&out).contains(&format!("warning: {}: line 4 is not a JSON record", s(&metrics))) && stderr(&out).contains("skipped"), "{}", stderr(&out));
    assert!(run.join("loss.svg").is_file());
}

/// A tiny Hyena run whose window is 32 tokens.
fn hyena_run(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("hyena");
    succeeds(&[
        "train",
        "--data",
        NAMES,
        "--out",
        s(&run),
        "--model",
        "hyena",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "-q",
        "--set",
        "model.max_len=32",
        "--set",
        "model.d_model=8",
        "--set",
        "model.n_layers=1",
        "--set",
        "train.eval_batches=1",
    ]);
    run
}

#[test]
fn sample_says_what_it_cannot_do() {
    let (_d, run) = copy_run();
    let run = s(&run);
    // Characters the run never saw are read as <unk>: said, with the characters.
    let out = succeeds(&["sample", "--run", run, "-n", "2", "--prompt", "Zoë"]);
    assert!(stderr(&out).contains("warning: the prompt has 2 character(s) outside the run's vocabulary ('Z', 'ë')"), "{}", stderr(&out));
    assert!(stderr(&succeeds(&["sample", "--run", run, "-n", "2", "--prompt", "em"])).is_empty(), "a known prompt warns");
    // Empty samples are not a result.
    fails(1, &["sample", "--run", run, "--max-tokens", "0"], &["--max-tokens", "at least 1"]);
    // A Hyena model's window ends samples before --max-tokens: said.
    let dir = tempfile::tempdir().unwrap();
    let hyena = hyena_run(dir.path());
    let out = convlm(&["sample", "--run", s(&hyena), "-n", "2", "--max-tokens", "100"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stderr(&out).contains("the hyena model reads at most 32 tokens: samples end after 32 new tokens, not --max-tokens 100"), "{}", stderr(&out));
}

#[test]
fn absurd_sizes_on_every_command_are_named_errors() {
    let (_d, run) = copy_run();
    let run = s(&run);
    let max = "18446744073709551615";
    for (args, words) in [
        (vec!["summary", "--batch", max], "not enough memory: a dilated model over a batch of 18446744073709551615 × 32 positions needs about"),
        (vec!["summary", "--set", "model.channels=100000000"], "not enough memory"),
        (vec!["summary", "--length", "4294967296"], "not enough memory"),
        (vec!["summary", "--vocab-size", max], "too large"),
        (vec!["shape", "--length", max, "--kernel", max, "--dilation", max], "is longer than the padded input (18446744073709551615)"),
        (vec!["bench", "--workload", "w2", "--steps", max], "more than the 1000000 steps a benchmark takes"),
        (vec!["bench", "--workload", "w2", "--steps", "1", "--warmup", max], "more than the 1000000 steps"),
        (vec!["bench", "--generate", "--tokens", max], "more than 10000"),
        (vec!["sample", "--run", run, "-n", max], "not enough memory: sampling 18446744073709551615 texts"),
        (vec!["sample", "--run", run, "--max-tokens", max], "not enough memory: sampling 20 texts"),
        (vec!["train", "--data", NAMES, "--steps", max], "more than 1000000000 steps"),
        (vec!["train", "--data", NAMES, "--set", "train.samples=4294967296"], "more than 1000"),
    ] {
        fails(1, &args, &[words]);
    }
}
