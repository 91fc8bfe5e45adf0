//! `convlm eval --block-size N` scores a stream run's own split (here the held-out tail of
//! tinyshakespeare, nanoGPT's protocol) over non-overlapping blocks of N tokens: the same
//! tokens whatever N, each predicted from its own block only.

mod common;

use common::cli::{convlm, succeeds, train_args};

use std::process::Output;

fn scored(out: &Output) -> (f64, String) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let loss: f64 = text.split("loss ").nth(1).and_then(|t| t.split(' ').next()).and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    (loss, text)
}

#[test]
fn the_tail_split_is_scored_over_blocks_of_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let data = common::shared("data/tinyshakespeare.txt");
    let tail =
        "--config shakespeare-cnn --steps 30 --warmup 5 --set data.split=tail --set data.splits.train=0.9 --set data.splits.val=0.1 --set data.splits.test=0.0";
    succeeds(&train_args(&data, &run, tail));
    let run = run.to_str().unwrap();
    // The last 10 of the stream's 99 chunks: 122,688 characters, every one predicted but
    // each chunk's first.
    let (short, text) = scored(&convlm(&["eval", "--run", run, "--split", "val", "--block-size", "64"]));
    assert!(text.contains("(122678 tokens)"), "{text}");
    let (long, text) = scored(&convlm(&["eval", "--run", run, "--split", "val", "--block-size", "256"]));
    assert!(text.contains("(122678 tokens)"), "{text}");
    let (default, _) = scored(&convlm(&["eval", "--run", run, "--split", "val"]));
    assert_eq!(default, scored(&convlm(&["eval", "--run", run, "--split", "val", "--block-size", "128"])).0, "the run's own block size by default");
    assert!(short.is_finite() && long.is_finite() && short != long, "blocks of 64 and 256 give the model different contexts: {short} vs {long}");
}
