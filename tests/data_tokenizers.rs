//! Round trips and file formats of the character and BPE tokenizers.

mod common;

use std::path::Path;

use convlm::data::{read_corpus, train_bpe, CharTokenizer, Normalization, Tokenizer, UnknownPolicy, SPECIAL_TOKEN_NAMES};
use proptest::prelude::*;

const NAMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/names.txt");
const SHAKESPEARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/tinyshakespeare.txt");

fn char_tok(text: &str) -> Tokenizer {
    Tokenizer::Char(CharTokenizer::from_corpus(text, Normalization::default(), UnknownPolicy::MapToUnk))
}

/// The first `n` bytes of tinyshakespeare (ASCII, so any cut is a char boundary).
fn shakespeare(n: usize) -> String {
    let text = read_corpus(Path::new(SHAKESPEARE)).unwrap();
    text[..n].to_string()
}

proptest! {
    #![proptest_config(common::property::config(file!(), 256))]

    #[test]
    fn char_round_trip_arbitrary_utf8(text in any::<String>()) {
        let tok = char_tok(&text);
        let ids = tok.encode(&text).unwrap();
        prop_assert_eq!(ids.len(), text.chars().count());
        prop_assert_eq!(tok.decode(&ids), text.clone());
        // The saved file gives the same tokenizer.
        let reloaded = Tokenizer::from_json(&tok.to_json().unwrap(), Path::new("t.json")).unwrap();
        prop_assert_eq!(reloaded.encode(&text).unwrap(), ids);
    }

    #[test]
    fn char_special_names_in_text_are_plain_characters(prefix in "[a-z<>]{0,8}") {
        let text = format!("{prefix}<pad><eos>");
        let tok = char_tok(&text);
        let ids = tok.encode(&text).unwrap();
        prop_assert!(!ids.iter().any(|&id| tok.specials().contains(id)));
        prop_assert_eq!(tok.decode(&ids), text);
    }
}

#[test]
fn names_vocab_is_26_letters_and_4_specials() {
    let text = read_corpus(Path::new(NAMES)).unwrap();
    let tok = Tokenizer::Char(CharTokenizer::from_lines(&text, Normalization::default(), UnknownPolicy::MapToUnk));
    assert_eq!(tok.vocab_size(), 30);
    // from_corpus keeps the line break as a token (for streams).
    assert_eq!(char_tok(&text).vocab_size(), 31);
    let s = tok.specials();
    let ids = [s.pad, s.bos, s.eos, s.unk];
    for (id, name) in ids.iter().zip(SPECIAL_TOKEN_NAMES) {
        assert_eq!(tok.token_text(*id), name);
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "special ids must differ: {ids:?}");
    let letters: String = (0..30u32).filter(|&id| !s.contains(id)).map(|id| tok.token_text(id)).collect();
    assert_eq!(letters, "abcdefghijklmnopqrstuvwxyz");
    assert_eq!(tok.token_text(30), "<id 30>");
}

#[test]
fn char_decode_skips_specials_and_unknown_ids() {
    let tok = char_tok("ab");
    let s = tok.specials();
    let a = tok.encode("a").unwrap()[0];
    assert_eq!(tok.decode(&[s.bos, a, s.pad, a, s.eos, s.unk]), "aa");
    assert_eq!(tok.decode(&[a, 999]), "a\u{FFFD}");
}

#[test]
fn unknown_characters_map_to_unk_or_are_rejected() {
    let tok = char_tok("abc");
    let unk = tok.specials().unk;
    let ids = tok.encode("abz").unwrap();
    assert_eq!(ids[2], unk);
    let strict = Tokenizer::Char(CharTokenizer::from_corpus("abc", Normalization::default(), UnknownPolicy::Reject));
    let err = strict.encode("abé").unwrap_err().to_string();
    assert!(err.contains("'é'") && err.contains("U+00E9") && err.contains("offset 2"), "{err}");
    // The policy survives a save/load.
    let reloaded = Tokenizer::from_json(&strict.to_json().unwrap(), Path::new("x.json")).unwrap();
    assert!(reloaded.encode("é").is_err());
}

#[test]
fn char_normalization_is_applied_and_saved() {
    let norm = Normalization { nfkc: true, lowercase: true, keep_punctuation: false };
    let tok = Tokenizer::Char(CharTokenizer::from_corpus("Hello, ﬁne World!", norm, UnknownPolicy::Reject));
    assert_eq!(tok.vocab_size(), 4 + "helo finwrd".chars().collect::<std::collections::BTreeSet<_>>().len());
    let ids = tok.encode("FINE, world").unwrap();
    assert_eq!(tok.decode(&ids), "fine world");
    let json = tok.to_json().unwrap();
    assert!(json.contains("\"type\": \"char\"") && json.contains("\"lowercase\": true"), "{json}");
    let reloaded = Tokenizer::from_json(&json, Path::new("n.json")).unwrap();
    assert_eq!(reloaded.encode("HELLO!").unwrap(), tok.encode("hello").unwrap());
}

#[test]
fn bad_char_tokenizer_files_name_the_source() {
    let source = Path::new("runs/x/tokenizer.json");
    let good = char_tok("ab").to_json().unwrap();
    let cases = [
        ("{not json", "not valid JSON"),
        (&good.replace("\"<unk>\",\n", ""), "\"<unk>\" missing"),
        (&good.replace("\"a\"", "\"ab\""), "not a single character"),
        (&good.replace("\"b\"", "\"a\""), "appears twice"),
        (&good.replace("\"version\": 1", "\"version\": 9"), "version 9"),
    ];
    for (text, expected) in cases {
        let err = Tokenizer::from_json(text, source).unwrap_err().to_string();
        assert!(err.starts_with("runs/x/tokenizer.json: ") && err.contains(expected), "{err}");
    }
}

#[test]
fn bpe_round_trip_and_save_load() {
    let corpus = shakespeare(200_000);
    let tok = train_bpe(&[corpus.as_str()], 500, Normalization::default()).unwrap();
    assert_eq!(tok.vocab_size(), 500);
    let s = tok.specials();
    for (id, name) in [s.pad, s.bos, s.eos, s.unk].iter().zip(SPECIAL_TOKEN_NAMES) {
        assert_eq!(tok.token_text(*id), name);
    }
    let samples =
        [&corpus[1000..3000], "ROMEO:\nWhat light through yonder window breaks?\n\n", "  leading spaces, tabs\tand unicode: café ΟΔΟΣ 日本 🙂 <pad> <eos>"];
    for text in samples {
        let ids = tok.encode(text).unwrap();
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size() && !s.contains(id)), "{ids:?}");
        assert_eq!(tok.decode(&ids), text);
    }
    // Merges learned: Shakespeare text needs far fewer tokens than bytes.
    let ids = tok.encode(&corpus[..10_000]).unwrap();
    assert!(ids.len() < 6_000, "{} tokens for 10000 bytes", ids.len());
    assert_eq!(tok.token_text(tok.encode(" the").unwrap()[0]), " the");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let loaded = Tokenizer::load(&path).unwrap();
    assert!(matches!(loaded, Tokenizer::Bpe(_)));
    assert_eq!(loaded.specials(), s);
    assert_eq!(loaded.vocab_size(), 500);
    assert_eq!(loaded.encode(samples[0]).unwrap(), tok.encode(samples[0]).unwrap());
    assert_eq!(loaded.to_json().unwrap(), tok.to_json().unwrap());
}

#[test]
fn bpe_training_is_deterministic() {
    let corpus = vec![shakespeare(50_000)];
    let a = train_bpe(&corpus, 400, Normalization::default()).unwrap().to_json().unwrap();
    let b = train_bpe(&corpus, 400, Normalization::default()).unwrap().to_json().unwrap();
    assert_eq!(a, b);
}

#[test]
fn bpe_normalization_is_stored_in_the_file() {
    let norm = Normalization { nfkc: true, lowercase: true, keep_punctuation: false };
    let tok = train_bpe(&[shakespeare(20_000)], 300, norm).unwrap();
    let text = "ROMEO: O, ﬁne!";
    assert_eq!(tok.decode(&tok.encode(text).unwrap()), norm.apply(text));
    assert_eq!(norm.apply(text), "romeo o fine");
    let reloaded = Tokenizer::from_json(&tok.to_json().unwrap(), Path::new("t.json")).unwrap();
    assert_eq!(reloaded.encode(text).unwrap(), tok.encode(text).unwrap());
}

#[test]
fn bpe_bad_inputs() {
    let err = train_bpe(&[shakespeare(1000)], 100, Normalization::default()).unwrap_err().to_string();
    assert!(err.contains("vocab_size") && err.contains("at least 260"), "{err}");
    let err = train_bpe(&["\n \n"], 300, Normalization::default()).unwrap_err().to_string();
    assert!(err.contains("empty corpus"), "{err}");
    let err = Tokenizer::from_json("{\"model\": 3}", Path::new("hf.json")).unwrap_err().to_string();
    assert!(err.starts_with("hf.json: not a tokenizers tokenizer.json"), "{err}");
}

#[test]
fn foreign_tokenizers_file_gets_the_missing_specials() {
    // A tokenizer.json written by the tokenizers library with only "<unk>" as special token.
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let vocab = [("<unk>", 0), ("hello", 1), ("world", 2)].map(|(w, i)| (w.to_string(), i)).into_iter().collect();
    let model = WordLevel::builder().vocab(vocab).unk_token("<unk>".into()).build().unwrap();
    let mut hf = tokenizers::Tokenizer::new(model);
    hf.with_pre_tokenizer(Some(Whitespace {}));
    hf.add_special_tokens(&[tokenizers::AddedToken::from("<unk>", true)]);
    let json = hf.to_string(false).unwrap();

    let tok = Tokenizer::from_json(&json, Path::new("foreign.json")).unwrap();
    let s = tok.specials();
    assert_eq!(s.unk, 0);
    let mut added = [s.pad, s.bos, s.eos];
    added.sort_unstable();
    assert_eq!(added, [3, 4, 5], "missing specials are appended after the vocabulary");
    assert_eq!(tok.vocab_size(), 6);
    assert_eq!(tok.encode("hello world nope").unwrap(), vec![1, 2, 0]);
}
