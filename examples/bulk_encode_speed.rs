//! Speed of `BulkEncoder` against `BpeTokenizer::encode` per line: trains BPE-5000 on
//! tinyshakespeare, encodes it repeated 20 times (22 MB) both ways on 2 threads (and the bulk
//! encoder on one thread), prints MB/s and checks the ids are equal.
//!
//!     cargo run --release --example bulk_encode_speed [path/to/tinyshakespeare.txt]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use convlm::data::{read_corpus, train_bpe, BulkEncoder, Normalization, Tokenizer};
use rayon::prelude::*;

const REPEAT: usize = 20;
const VOCAB: usize = 5000;

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/tinyshakespeare.txt")));
    let threads = convlm::tensor::threads::init_threads(Some(2));
    let corpus = read_corpus(&path).with_context(|| format!("reading {}", path.display()))?;

    let start = Instant::now();
    let tok = match train_bpe(&[corpus.as_str()], VOCAB, Normalization::default())? {
        Tokenizer::Bpe(tok) => tok,
        Tokenizer::Char(_) => bail!("train_bpe made a character tokenizer"),
    };
    println!("trained BPE-{} in {:.1} s ({threads} threads)", tok.vocab_size(), start.elapsed().as_secs_f64());

    let text = corpus.repeat(REPEAT);
    let mb = text.len() as f64 / 1e6;

    // (a) the library, one line at a time, lines spread over the pool.
    let start = Instant::now();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let per_line: Vec<Vec<u32>> = lines.par_iter().map(|line| tok.encode(line)).collect::<convlm::Result<_>>()?;
    let library_s = start.elapsed().as_secs_f64();
    let library_ids: Vec<u32> = per_line.concat();
    println!("BpeTokenizer::encode per line: {mb:.1} MB in {library_s:.2} s = {:.1} MB/s, {} ids", mb / library_s, library_ids.len());

    // (b) the bulk encoder, 1 MiB chunks cut at its split points, in parallel.
    let bulk = BulkEncoder::new(&tok)?;
    if let Some(reason) = bulk.fallback_reason() {
        bail!("not on the fast path: {reason}");
    }
    let start = Instant::now();
    let bulk_ids = bulk.encode_parallel(&text)?;
    let bulk_s = start.elapsed().as_secs_f64();
    println!("BulkEncoder::encode_parallel:  {mb:.1} MB in {bulk_s:.2} s = {:.1} MB/s, {} ids", mb / bulk_s, bulk_ids.len());

    // (c) the same, one thread, the whole text as one chunk (a fresh encoder: cold cache).
    let single = BulkEncoder::new(&tok)?;
    let start = Instant::now();
    let single_ids = single.encode(&text)?;
    let single_s = start.elapsed().as_secs_f64();
    println!("BulkEncoder::encode, 1 thread: {mb:.1} MB in {single_s:.2} s = {:.1} MB/s", mb / single_s);
    if single_ids != bulk_ids {
        bail!("encode_parallel (chunked) and encode (whole) differ");
    }

    // The check: the library on each of the bulk encoder's chunks (the same texts).
    let chunks = bulk.chunks(&text, 1 << 20);
    let expected: Vec<Vec<u32>> = chunks.par_iter().map(|chunk| tok.encode(chunk)).collect::<convlm::Result<_>>()?;
    if bulk_ids != expected.concat() {
        bail!("BulkEncoder ids differ from BpeTokenizer::encode on the same chunks");
    }
    // Per line the pieces can differ where a line ends in a space (" \n" is one piece at the
    // end of a text, two before a word), so this is only reported.
    let per_line_equal = bulk_ids == library_ids;
    println!("per-line library ids {} the whole-text ids", if per_line_equal { "equal" } else { "differ from" });
    println!("ids equal; speed-up {:.1}x", library_s / bulk_s);
    Ok(())
}
