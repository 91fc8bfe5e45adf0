//! Stream datasets (random windows) and grid datasets (pixelcnn) on tinyshakespeare.

use std::path::Path;

use convlm::data::{read_corpus, train_bpe, CharTokenizer, Dataset, DatasetKind, Normalization, Split, Splits, Tokenizer, UnknownPolicy, IGNORE_INDEX};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SHAKESPEARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/tinyshakespeare.txt");

fn shakespeare() -> (String, Tokenizer) {
    let text = read_corpus(Path::new(SHAKESPEARE)).unwrap();
    let tok = Tokenizer::Char(CharTokenizer::from_corpus(&text, Normalization::default(), UnknownPolicy::Reject));
    (text, tok)
}

fn char_tok(text: &str) -> Tokenizer {
    Tokenizer::Char(CharTokenizer::from_corpus(text, Normalization::default(), UnknownPolicy::MapToUnk))
}

#[test]
fn stream_windows_are_shifted_substrings() {
    let (text, tok) = shakespeare();
    assert_eq!(tok.vocab_size(), 65 + 4);
    let ds = Dataset::stream(&text, &tok, 64, &Splits::default(), 7).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Stream);
    assert_eq!(ds.max_seq_len(), 64);
    let total: usize = Split::ALL.iter().map(|&s| ds.num_tokens(s)).sum();
    assert_eq!(total, text.chars().count());
    // 100 chunks of 11,154 characters (the remainder joins the last): 80 / 10 / 10 chunks.
    assert_eq!(ds.num_tokens(Split::Val), 10 * 11_154);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let batch = ds.sample_batch(Split::Train, 16, &mut rng);
    assert_eq!((batch.batch_size, batch.seq_len, batch.inputs.len()), (16, 64, 16 * 64));
    for r in 0..16 {
        let (x, y) = batch.row(r);
        assert!(y.iter().all(|&t| t != IGNORE_INDEX));
        for t in 0..63 {
            assert_eq!(y[t], i64::from(x[t + 1]));
        }
        let mut window = x.to_vec();
        window.push(y[63] as u32);
        assert!(text.contains(&tok.decode(&window)), "window of 65 tokens comes from the text");
    }
}

#[test]
fn stream_eval_windows_predict_every_token_once() {
    let (text, tok) = shakespeare();
    let ds = Dataset::stream(&text, &tok, 100, &Splits::default(), 7).unwrap();
    // Each val chunk of 11,154 tokens has ceil(11,153 / 100) = 112 windows.
    assert_eq!(ds.num_examples(Split::Val), 10 * 112);
    let batches: Vec<_> = ds.batches(Split::Val, 64).collect();
    assert_eq!(batches.iter().map(|b| b.batch_size).sum::<usize>(), 1120);
    assert!(batches.iter().all(|b| b.seq_len == 100));
    let targets: usize = batches.iter().map(|b| b.num_targets()).sum();
    assert_eq!(targets, ds.num_tokens(Split::Val) - 10, "every token but each chunk's first");
    // The last window of a chunk is short: padded with <pad> and ignored targets.
    let (x, y) = batches[1].row(111 - 64);
    assert_eq!(y.iter().filter(|&&t| t != IGNORE_INDEX).count(), 53);
    assert!(x[53..].iter().all(|&t| t == tok.specials().pad));
}

#[test]
fn stream_split_depends_on_seed_only() {
    let (text, tok) = shakespeare();
    let text = &text[..200_000];
    let first_val = |seed| ds_first_val(text, &tok, seed);
    assert_eq!(first_val(1), first_val(1));
    assert_ne!(first_val(1), first_val(2));
}

fn ds_first_val(text: &str, tok: &Tokenizer, seed: u64) -> Vec<u32> {
    let ds = Dataset::stream(text, tok, 32, &Splits::default(), seed).unwrap();
    let first = ds.batches(Split::Val, 1).next().unwrap();
    first.inputs
}

#[test]
fn stream_with_bpe_tokens() {
    let (text, _) = shakespeare();
    let tok = train_bpe(&[&text[..100_000]], 400, Normalization::default()).unwrap();
    let ds = Dataset::stream(&text[..100_000], &tok, 32, &Splits::default(), 0).unwrap();
    let batch = ds.sample_batch(Split::Test, 4, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!((batch.batch_size, batch.seq_len), (4, 32));
    assert!(batch.inputs.iter().all(|&id| (id as usize) < tok.vocab_size()));
}

#[test]
fn stream_bad_input() {
    let tok = char_tok("hello world");
    let err = Dataset::stream("hello world", &tok, 8, &Splits::default(), 0).unwrap_err().to_string();
    assert_eq!(
        err,
        "data: the corpus has 11 tokens; block_size 8 with splits 0.8/0.1/0.1 needs at least 27 \
         (3 chunks of block_size + 1 tokens)"
    );
    let train_only = Splits { train: 1.0, val: 0.0, test: 0.0 };
    assert!(Dataset::stream("hello world", &tok, 8, &train_only, 0).is_ok());
    let err = Dataset::stream("hello world", &tok, 0, &train_only, 0).unwrap_err().to_string();
    assert_eq!(err, "invalid block_size: must be at least 1");
}

#[test]
fn grid_rows_wrap_and_pad() {
    let tok = char_tok("abcdefgxyz");
    let train_only = Splits { train: 1.0, val: 0.0, test: 0.0 };
    let ds = Dataset::grid("ab\nabcdefg\n\nxyz\n\n\n\n", &tok, 3, 2, &train_only, 0).unwrap();
    assert_eq!(ds.kind(), DatasetKind::Grid);
    assert_eq!(ds.grid_shape(), Some((2, 3)));
    // Rows: "ab·" "abc" | "def" "g··" | "···" "xyz" | "···" "···" (dropped: no text).
    assert_eq!(ds.num_examples(Split::Train), 3);
    let batch = ds.batches(Split::Train, 10).next().unwrap();
    assert_eq!((batch.batch_size, batch.seq_len, batch.grid), (3, 6, Some((2, 3))));
    let pad = tok.specials().pad;
    let show = |ids: &[u32]| ids.iter().map(|&t| if t == pad { "·".into() } else { tok.decode(&[t]) }).collect::<String>();
    let grids: Vec<String> = (0..3).map(|r| show(batch.row(r).0)).collect();
    assert_eq!(grids, ["ab·abc", "defg··", "···xyz"]);
    for r in 0..3 {
        let (x, y) = batch.row(r);
        for (&i, &t) in x.iter().zip(y) {
            assert_eq!(t, if i == pad { IGNORE_INDEX } else { i64::from(i) }, "target = grid, pads ignored");
        }
    }
}

#[test]
fn shakespeare_grids() {
    let (text, tok) = shakespeare();
    let ds = Dataset::grid(&text, &tok, 32, 16, &Splits::default(), 5).unwrap();
    let n: usize = Split::ALL.iter().map(|&s| ds.num_examples(s)).sum();
    assert!(n > 2000, "{n} grids");
    assert_eq!(ds.max_seq_len(), 512);
    let batch = ds.sample_batch(Split::Val, 8, &mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!((batch.batch_size, batch.seq_len, batch.grid), (8, 512, Some((16, 32))));
    assert!(batch.num_targets() > 0);
    let newline = tok.encode("\n").unwrap()[0];
    assert!(!batch.inputs.contains(&newline), "line breaks are rows, not tokens");
}

#[test]
fn grid_bad_input() {
    let tok = char_tok("ab");
    let err = Dataset::grid("ab\n", &tok, 0, 4, &Splits::default(), 0).unwrap_err().to_string();
    assert_eq!(err, "invalid grid: width and height must be at least 1, got 0×4");
    let err = Dataset::grid("\n\n\n", &tok, 4, 4, &Splits::default(), 0).unwrap_err().to_string();
    assert!(err.contains("no text"), "{err}");
    let err = Dataset::grid("ab\nab\n", &tok, 2, 1, &Splits::default(), 0).unwrap_err().to_string();
    assert!(err.contains("the corpus has 2 grids, fewer than the splits"), "{err}");
}
