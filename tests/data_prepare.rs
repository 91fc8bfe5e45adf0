//! Prepared corpora (`convlm prepare`, docs/corpus-format.md): a corpus tokenized once into
//! files gives the same ids and the same datasets as tokenizing the text in memory; broken,
//! unfinished and mismatched corpora are errors naming them; the command refuses to write
//! over anything but a corpus.

mod common;

use common::cli::{stderr, stdout};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use convlm::data::{
    open_corpus, prepare, read_corpus, train_bpe, CharTokenizer, Dataset, DatasetKind, Layout, LineOptions, LineRules, Normalization, PrepareOptions, Source,
    SourceOptions, Split, SplitMode, Splits, TokenStore, Tokenizer, TokenizerSpec, UnknownPolicy, CORPUS_META, TOKENS_FILE,
};

fn options(kind: DatasetKind, tokenizer: TokenizerSpec) -> PrepareOptions {
    PrepareOptions {
        kind,
        tokenizer,
        normalization: Normalization::default(),
        unknown: UnknownPolicy::MapToUnk,
        rules: LineRules { dedupe: false, max_line_len: 1000 },
        source: SourceOptions::default(),
    }
}

/// Prepares `path` into `out` and opens it.
fn prepared(path: &Path, opts: &PrepareOptions, out: &Path) -> (Tokenizer, Arc<TokenStore>) {
    prepare(&Source::Path(path), opts, out, |_| {}).unwrap();
    let (_, store) = open_corpus(out).unwrap();
    (Tokenizer::load(&out.join("tokenizer.json")).unwrap(), Arc::new(store))
}

fn all_ids(store: &TokenStore) -> Vec<u32> {
    store.read(0..store.len())
}

/// Every batch of every split, in order.
fn every_batch(ds: &Dataset) -> Vec<(Vec<u32>, Vec<i64>)> {
    Split::ALL.iter().flat_map(|&s| ds.batches(s, 50).map(|b| (b.inputs, b.targets))).collect()
}

fn convlm(args: &[&str], cache: &Path) -> Output {
    common::cli::command().args(args).env("CONVLM_CACHE", cache).output().expect("convlm runs")
}

#[test]
fn prepared_lines_equal_the_in_memory_dataset() {
    let names = common::shared("data/names.txt");
    let dir = tempfile::tempdir().unwrap();
    let (tok, store) = prepared(&names, &options(DatasetKind::Lines, TokenizerSpec::Char), dir.path());
    let text = read_corpus(&names).unwrap();
    // Line data has no newline in its alphabet: lines are framed by <bos>/<eos>.
    let mem_tok = Tokenizer::Char(CharTokenizer::from_corpus(&text.replace('\n', ""), Normalization::default(), UnknownPolicy::MapToUnk));
    assert_eq!(tok.to_json().unwrap(), mem_tok.to_json().unwrap(), "the same alphabet");
    assert_eq!(store.num_docs(), 32_033, "one document per name");
    assert_eq!(tok.decode(&store.read(store.doc(0))), text.lines().next().unwrap());
    let opts = LineOptions { seed: 5, ..LineOptions::default() };
    let mem = Dataset::lines(&text, &mem_tok, &opts).unwrap();
    let layout = Layout { kind: DatasetKind::Lines, block_size: 0, grid: (0, 0), splits: opts.splits, mode: SplitMode::Dealt, seed: 5 };
    let mapped = Dataset::from_store(store, &tok, &layout).unwrap();
    for split in Split::ALL {
        assert_eq!(mapped.num_examples(split), mem.num_examples(split), "{split:?}");
    }
    assert_eq!(every_batch(&mapped), every_batch(&mem));
}

#[test]
fn prepared_stream_across_read_blocks_equals_encoding_the_whole_text() {
    // Five copies of tinyshakespeare (5.6 MB): more than one 4 MB read block, so the ids
    // written at a block's edge are checked too.
    let one = read_corpus(&common::shared("data/tinyshakespeare.txt")).unwrap();
    let text = one.repeat(5);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("five.txt");
    std::fs::write(&file, &text).unwrap();
    let (tok, store) = prepared(&file, &options(DatasetKind::Stream, TokenizerSpec::Char), &dir.path().join("corpus"));
    assert_eq!(all_ids(&store), tok.encode(&text).unwrap());
    let mem = Dataset::stream(&text, &tok, 64, &Splits::default(), 9).unwrap();
    let layout = Layout { kind: DatasetKind::Stream, block_size: 64, grid: (0, 0), splits: Splits::default(), mode: SplitMode::Dealt, seed: 9 };
    let mapped = Dataset::from_store(store, &tok, &layout).unwrap();
    for split in Split::ALL {
        assert_eq!(mapped.num_tokens(split), mem.num_tokens(split), "{split:?}");
        assert_eq!(mapped.batch_at(split, 3, 32).inputs, mem.batch_at(split, 3, 32).inputs, "{split:?}");
    }
}

#[test]
fn prepared_bpe_stream_equals_the_tokenizers_own_encoding() {
    let text: String = read_corpus(&common::shared("data/tinyshakespeare.txt")).unwrap().chars().take(300_000).collect();
    let tok = train_bpe(&[text.as_str()], 400, Normalization::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("text.txt");
    std::fs::write(&file, &text).unwrap();
    let (saved, store) = prepared(&file, &options(DatasetKind::Stream, TokenizerSpec::Given(tok.clone())), &dir.path().join("corpus"));
    assert_eq!(saved.to_json().unwrap(), tok.to_json().unwrap(), "the given tokenizer is stored as it is");
    let ids = all_ids(&store);
    assert_eq!(ids, tok.encode(&text).unwrap());
    assert_eq!(tok.decode(&ids), text, "byte-level BPE round-trips the text");
}

#[test]
fn a_folder_is_prepared_as_its_files_joined_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("b.txt"), "bob\nbea\n").unwrap();
    std::fs::write(src.join("a.txt"), "ann\r\nal").unwrap();
    std::fs::write(src.join("sub/c.txt"), "cy\n").unwrap();
    let (tok, store) = prepared(&src, &options(DatasetKind::Lines, TokenizerSpec::Char), &dir.path().join("corpus"));
    let lines: Vec<String> = (0..store.num_docs()).map(|i| tok.decode(&store.read(store.doc(i)))).collect();
    assert_eq!(lines, ["ann", "al", "bob", "bea", "cy"]);
    assert_eq!(read_corpus(&src).unwrap().lines().collect::<Vec<_>>(), lines, "the same text the in-memory reader joins");
}

#[test]
fn empty_sources_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("empty.txt");
    std::fs::write(&empty_file, "").unwrap();
    let empty_folder = dir.path().join("nothing");
    std::fs::create_dir(&empty_folder).unwrap();
    let blank_folder = dir.path().join("blank");
    std::fs::create_dir(&blank_folder).unwrap();
    std::fs::write(blank_folder.join("a.txt"), "").unwrap();
    std::fs::write(blank_folder.join("b.txt"), "").unwrap();
    let opts = options(DatasetKind::Stream, TokenizerSpec::Char);
    for (path, says) in [
        (&empty_file, "the corpus file is empty"),
        (&empty_folder, "the corpus folder has no regular files"),
        (&blank_folder, "all 2 files of the corpus folder are empty"),
    ] {
        let out = dir.path().join("out");
        let err = prepare(&Source::Path(path), &opts, &out, |_| {}).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(says), "{err}");
        assert!(open_corpus(&out).is_err(), "no corpus is left behind");
    }
}

#[test]
fn damaged_and_unfinished_corpora_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    prepare(&Source::Path(&common::shared("data/names.txt")), &options(DatasetKind::Lines, TokenizerSpec::Char), &corpus, |_| {}).unwrap();
    let tokens = corpus.join(TOKENS_FILE);
    let bytes = std::fs::read(&tokens).unwrap();
    std::fs::write(&tokens, &bytes[..bytes.len() - 3]).unwrap();
    let Err(err) = open_corpus(&corpus) else { panic!("a truncated tokens.bin is an error") };
    let err = err.to_string();
    assert!(err.contains(&tokens.display().to_string()), "{err}");
    std::fs::write(&tokens, &bytes).unwrap();
    assert!(open_corpus(&corpus).is_ok());

    // Ids outside the vocabulary show only in the batches drawn from them (opening does not
    // read the file through): training names tokens.bin, and nothing panics.
    let damaged: Vec<u8> = bytes.iter().map(|_| 0xff).collect();
    std::fs::write(&tokens, &damaged).unwrap();
    let run = dir.path().join("run");
    let args = ["train", "--data", common::cli::s(&corpus), "--out", common::cli::s(&run), "--steps", "5", "--warmup", "0", "-q"];
    common::cli::fails(1, &args, &[&tokens.display().to_string(), "token id 65535, outside the tokenizer's vocabulary of 30"]);
    std::fs::write(&tokens, &bytes).unwrap();

    // corpus.json is written last: without it the folder is a prepare that did not finish,
    // never a folder of text files to read as text.
    std::fs::remove_file(corpus.join(CORPUS_META)).unwrap();
    let Err(err) = open_corpus(&corpus) else { panic!("no corpus.json, no corpus") };
    let err = err.to_string();
    assert!(err.contains("is not a prepared corpus"), "{err}");
    let err = read_corpus(&corpus).unwrap_err().to_string();
    assert!(err.contains("did not finish") && err.contains(&corpus.display().to_string()), "{err}");
}

#[test]
fn a_corpus_cut_short_while_open_is_an_error_naming_it() {
    // The ids are read when a window is drawn, not mapped (a mapped file cut short is a
    // SIGBUS): a tokens.bin truncated under a run stops the next batch with an error naming it.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    let (tok, store) = prepared(&common::shared("data/tinyshakespeare.txt"), &options(DatasetKind::Stream, TokenizerSpec::Char), &corpus);
    let layout = Layout { kind: DatasetKind::Stream, block_size: 64, grid: (0, 0), splits: Splits::default(), mode: SplitMode::Dealt, seed: 1 };
    let ds = Dataset::from_store(store.clone(), &tok, &layout).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = store.len();
    let end = tok.encode("Whiles thou art waking.\n").unwrap(); // the corpus's last line
    assert_eq!(store.read(n - end.len()..n), end);
    ds.check_batch(&ds.sample_batch(Split::Train, 8, &mut rng)).unwrap();

    let tokens = corpus.join(TOKENS_FILE);
    std::fs::OpenOptions::new().write(true).open(&tokens).unwrap().set_len(0).unwrap();
    assert_eq!(store.read(n - 3..n), [u32::MAX; 3], "ids that could not be read are no id");
    assert_eq!(store.take_read_error().map(|e| e.kind()), Some(std::io::ErrorKind::UnexpectedEof));
    let err = ds.check_batch(&ds.sample_batch(Split::Train, 8, &mut rng)).unwrap_err().to_string();
    assert!(err.contains(&tokens.display().to_string()), "{err}");
}

#[test]
fn the_tail_split_is_the_end_of_the_stream() {
    let text = read_corpus(&common::shared("data/tinyshakespeare.txt")).unwrap();
    let tok = Tokenizer::Char(CharTokenizer::from_corpus(&text, Normalization::default(), UnknownPolicy::MapToUnk));
    let store = Arc::new(TokenStore::owned(tok.encode(&text).unwrap(), None));
    let splits = Splits { train: 0.9, val: 0.1, test: 0.0 };
    let layout = Layout { kind: DatasetKind::Stream, block_size: 256, grid: (0, 0), splits, mode: SplitMode::Tail, seed: 1 };
    let ds = Dataset::from_store(store.clone(), &tok, &layout).unwrap();
    let n = store.len();
    // Chunks of ceil(n / 100) tokens, the remainder joining the last (99 chunks here): val
    // is the last 10 of them.
    let chunk = n.div_ceil(100);
    let val_start = (n / chunk - 10) * chunk;
    assert_eq!(ds.num_tokens(Split::Val), n - val_start);
    let first = ds.batch_at(Split::Val, 0, 1);
    assert_eq!(first.inputs, store.read(val_start..val_start + 256), "val starts where train ends");
    let last = ds.batches(Split::Val, 1).last().unwrap();
    let (_, targets) = last.row(0);
    let kept: Vec<u32> = targets.iter().filter(|&&t| t >= 0).map(|&t| t as u32).collect();
    assert_eq!(kept, store.read(n - kept.len()..n), "and ends with the corpus");
}

#[test]
fn prepare_command_writes_a_corpus_that_train_and_eval_read() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let names = common::shared("data/names.txt");
    let names = names.to_str().unwrap();
    let corpus = dir.path().join("names-corpus");
    let corpus_arg = corpus.to_str().unwrap();
    let out = convlm(&["prepare", "--data", names, "--out", corpus_arg, "--dataset", "lines"], &cache);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("prepared 196113 tokens in 32033 lines (u16 ids, vocabulary 30)"), "{}", stdout(&out));

    // Written once: again needs --force; a folder with other files is never written over.
    let again = convlm(&["prepare", "--data", names, "--out", corpus_arg, "--dataset", "lines"], &cache);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already holds a prepared corpus: pass --force"), "{}", stderr(&again));
    let forced = convlm(&["prepare", "--data", names, "--out", corpus_arg, "--dataset", "lines", "--force"], &cache);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let refused = convlm(&["prepare", "--data", names, "--out", other.to_str().unwrap(), "--force"], &cache);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("holds more than a prepared corpus"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1, "nothing written into someone else's folder");

    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let trained = convlm(&["train", "--config", "names-mlp", "--data", corpus_arg, "--out", run_arg, "--steps", "20", "-q"], &cache);
    assert!(trained.status.success(), "{}", stderr(&trained));
    // (The cache may hold this CPU's measured kernel choices, `cpu-tuning/`, but no corpus.)
    assert!(!cache.join("corpora").exists(), "a prepared corpus is read where it is, never copied into the cache");
    let scored = convlm(&["eval", "--run", run_arg, "--data", corpus_arg], &cache);
    assert!(scored.status.success(), "{}", stderr(&scored));
    assert!(stdout(&scored).contains("loss"), "{}", stdout(&scored));

    // The same kind of data made with another alphabet: its ids mean other characters.
    let shakespeare = dir.path().join("shakespeare-corpus");
    let made = convlm(
        &["prepare", "--data", common::shared("data/tinyshakespeare.txt").to_str().unwrap(), "--out", shakespeare.to_str().unwrap(), "--dataset", "lines"],
        &cache,
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let mismatch = convlm(&["eval", "--run", run_arg, "--data", shakespeare.to_str().unwrap()], &cache);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(stderr(&mismatch).contains("was tokenized with another tokenizer than the run's"), "{}", stderr(&mismatch));

    // A corpus prepared as lines is not a stream.
    let wrong_kind = convlm(&["train", "--data", corpus_arg, "--dataset", "stream", "--out", dir.path().join("run2").to_str().unwrap(), "-q"], &cache);
    assert_eq!(wrong_kind.status.code(), Some(1));
    assert!(stderr(&wrong_kind).contains("is a corpus prepared as lines data, but the run asks for stream"), "{}", stderr(&wrong_kind));
}

#[test]
fn an_interrupted_prepare_is_named_and_prepare_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    // What a prepare killed while encoding leaves: a partial token file, no corpus.json.
    std::fs::write(corpus.join(".tokens.bin.partial"), [1u8, 0, 2, 0]).unwrap();
    let corpus_arg = corpus.to_str().unwrap();
    let out = convlm(&["train", "--data", corpus_arg, "--out", dir.path().join("run").to_str().unwrap(), "-q"], &cache);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(corpus_arg) && err.contains("did not finish"), "{err}");
    assert!(!dir.path().join("run").exists(), "no run started");
    let names = common::shared("data/names.txt");
    let redo = convlm(&["prepare", "--data", names.to_str().unwrap(), "--out", corpus_arg, "--dataset", "lines"], &cache);
    assert!(redo.status.success(), "the leftovers are written over: {}", stderr(&redo));
    assert!(open_corpus(&corpus).is_ok());
    assert!(!corpus.join(".tokens.bin.partial").exists());
}
