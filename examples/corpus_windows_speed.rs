//! Speed and resident memory of reading training windows from a prepared corpus: opens the
//! corpus folder as `convlm train` does (a stream dataset, `block_size` 128, dealt splits),
//! then draws rounds of random training batches of 32 windows and, once, 20 evaluation batches
//! of the validation split. Prints µs per batch (minimum and median of the rounds) and the
//! process's peak and file-backed resident memory (Linux).
//!
//!     cargo run --release --example corpus_windows_speed -- CORPUS_DIR [ROUNDS] [BATCHES]
//!
//! Make the corpus with `convlm prepare --data TEXT --out CORPUS_DIR` (a stream). Right after
//! the prepare its pages are still in the page cache; see docs/corpus-format.md, "Memory".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use convlm::data::{open_corpus, Dataset, DatasetKind, Layout, Split, SplitMode, Splits, Tokenizer, CORPUS_TOKENIZER};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: corpus_windows_speed CORPUS_DIR [ROUNDS] [BATCHES]")?);
    let rounds: usize = args.next().map_or(Ok(9), |a| a.parse()).context("ROUNDS")?;
    let batches: usize = args.next().map_or(Ok(2000), |a| a.parse()).context("BATCHES")?;
    convlm::tensor::threads::init_threads(Some(1));

    let (meta, store) = open_corpus(&dir)?;
    anyhow::ensure!(meta.kind == DatasetKind::Stream, "{} is a {:?} corpus, not a stream", dir.display(), meta.kind);
    let tokenizer = Tokenizer::load(&dir.join(CORPUS_TOKENIZER))?;
    let layout = Layout { kind: DatasetKind::Stream, block_size: 128, grid: (0, 0), splits: Splits::default(), mode: SplitMode::Dealt, seed: 1337 };
    let dataset = Dataset::from_store(Arc::new(store), &tokenizer, &layout)?;

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut per_batch_us = Vec::with_capacity(rounds);
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..batches {
            let batch = dataset.sample_batch(Split::Train, 32, &mut rng);
            checksum = checksum.wrapping_add(u64::from(batch.inputs[batch.inputs.len() / 2]));
        }
        per_batch_us.push(start.elapsed().as_secs_f64() * 1e6 / batches as f64);
    }
    let eval = dataset.num_examples(Split::Val).div_ceil(32);
    for i in 0..20.min(eval) {
        let batch = dataset.batch_at(Split::Val, i * eval / 20, 32);
        checksum = checksum.wrapping_add(u64::from(batch.inputs[0]));
    }
    per_batch_us.sort_by(f64::total_cmp);
    println!(
        "{}: {} tokens, {rounds} rounds of {batches} batches of 32 x 129 ids: {:.2} µs/batch min, {:.2} median (checksum {checksum})",
        dir.display(),
        meta.tokens,
        per_batch_us[0],
        per_batch_us[rounds / 2]
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
        println!("peak RSS {} kB (now: anonymous {} kB, file-backed {} kB)", field("VmHWM:"), field("RssAnon:"), field("RssFile:"));
    }
    Ok(())
}
