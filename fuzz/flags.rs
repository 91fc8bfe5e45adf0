//! The command line as a fuzz target: every subcommand with cheap, valid base arguments, the
//! flags that take a value, and values that break assumptions (zero, negative, 2^32, 2^64 - 1,
//! 2^64, NaN, infinity, empty, junk, special files). `tests/reliability_fuzz.rs` runs the
//! binary on every (subcommand, flag, value) and on random combinations, and fails on a panic
//! (exit 101), an abort (134), another signal or a hang. Used by the tests only (the
//! cargo-fuzz targets fuzz the parsers in-process).
#![allow(dead_code)]

/// A subcommand to fuzz: its base arguments (with `{data}`, `{run}`, `{out}` to fill in) and
/// its flags that take a value.
pub struct Subcommand {
    pub name: &'static str,
    pub base: &'static [&'static str],
    pub flags: &'static [&'static str],
}

/// Every subcommand (bench twice: training workloads and generation; prepare twice:
/// characters and BPE). `--force` is never fuzzed: it moves folders aside.
pub const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "train",
        base: &[
            "train",
            "--data",
            "{data}",
            "--out",
            "{out}",
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--batch-size",
            "4",
            "-q",
            "--set",
            "model.channels=8",
            "--set",
            "train.eval_batches=1",
        ],
        flags: &[
            "--data",
            "--out",
            "--model",
            "--config",
            "--dataset",
            "--tokenizer",
            "--steps",
            "--epochs",
            "--time-limit",
            "--batch-size",
            "--lr",
            "--optimizer",
            "--momentum",
            "--weight-decay",
            "--schedule",
            "--warmup",
            "--clip-grad",
            "--eval-every",
            "--checkpoint-every",
            "--seed",
            "--threads",
            "--set",
        ],
    },
    Subcommand {
        name: "prepare",
        base: &["prepare", "--data", "{data}", "--out", "{out}", "--dataset", "lines"],
        flags: &["--data", "--out", "--tokenizer", "--vocab-size", "--dataset", "--max-line-len", "--special-file-limit", "--threads"],
    },
    Subcommand {
        name: "prepare-bpe",
        base: &["prepare", "--data", "{data}", "--out", "{out}", "--tokenizer", "bpe", "--vocab-size", "300"],
        flags: &["--vocab-size", "--max-line-len", "--dataset"],
    },
    Subcommand {
        name: "sample",
        base: &["sample", "--run", "{run}", "-n", "2", "--max-tokens", "8"],
        flags: &["--run", "-n", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--seed"],
    },
    Subcommand { name: "eval", base: &["eval", "--run", "{run}"], flags: &["--run", "--split", "--data", "--block-size"] },
    Subcommand { name: "plot", base: &["plot", "--run", "{run}"], flags: &["--run"] },
    Subcommand { name: "summary", base: &["summary", "--model", "dilated"], flags: &["--model", "--config", "--batch", "--length", "--vocab-size", "--set"] },
    Subcommand {
        name: "shape",
        base: &["shape", "--length", "10", "--kernel", "3"],
        flags: &["--length", "--kernel", "--stride", "--padding", "--dilation", "--output-padding"],
    },
    Subcommand {
        name: "bench",
        base: &["bench", "--workload", "w2", "--steps", "1", "--warmup", "0"],
        flags: &["--workload", "--steps", "--warmup", "--threads", "--seed"],
    },
    Subcommand { name: "bench-generate", base: &["bench", "--generate", "--tokens", "2"], flags: &["--tokens", "--seed", "--threads"] },
    Subcommand {
        name: "tokenizer",
        base: &["tokenizer", "train", "--data", "{data}", "--vocab-size", "300", "--out", "{out}.json"],
        flags: &["--data", "--vocab-size", "--out"],
    },
];

/// The values every flag gets in CI: boundaries, overflow, non-numbers.
pub const VALUES: &[&str] = &["0", "1", "-1", "4294967296", "18446744073709551615", "18446744073709551616", "nan", "", "x"];

/// More values, for `CONVLM_FUZZ_SCALE` > 1.
pub const MORE_VALUES: &[&str] = &[
    "2",
    "-0",
    "1.5",
    "0x10",
    "1e308",
    "-1e308",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999",
    " 1",
    "1 ",
    "é",
    "/dev/null",
    "/dev/zero",
    "missing/dir/file",
    ".",
    "a=b",
    "model.channels=18446744073709551615",
    "model.channels=-1",
    "train.batch_size=0",
    "data.block_size=18446744073709551615",
    "data.kind=grid",
    "model.family=hyena",
    "=",
    "w9",
    "names-best",
    "hyena",
    "pixelcnn",
    "bpe",
    "stream",
    "grid",
    "test",
    "1h",
    "15m",
    "0s",
];

/// `base` with `flag value` (replacing the base's own value of that flag, if it has one);
/// `{data}`, `{run}` and `{out}` filled in.
pub fn case_args(sub: &Subcommand, pairs: &[(&str, &str)], data: &str, run: &str, out: &str) -> Vec<String> {
    let mut args: Vec<String> = sub.base.iter().map(|a| a.replace("{data}", data).replace("{run}", run).replace("{out}", out)).collect();
    for &(flag, value) in pairs {
        match args.iter().position(|a| a == flag).filter(|_| flag != "--set") {
            Some(i) if i + 1 < args.len() => args[i + 1] = value.to_string(),
            _ => {
                args.push(flag.to_string());
                args.push(value.to_string());
            }
        }
    }
    args
}
