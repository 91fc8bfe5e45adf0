//! `BulkEncoder` gives exactly the ids of `BpeTokenizer::encode`: on tinyshakespeare, tricky
//! and random strings, chunk by chunk at its split points, and through the library fallback.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use convlm::data::{read_corpus, train_bpe, BpeTokenizer, BulkEncoder, Normalization, Tokenizer};
use proptest::prelude::*;
use serde_json::{json, Value};

const SHAKESPEARE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/tinyshakespeare.txt");

const TRICKY: &[&str] = &[
    "",
    " ",
    "  ",
    "\n",
    "\n\n  \n",
    "hello world",
    "  leading and trailing  ",
    "multiple   spaces\tand\t\ttabs \t mixed",
    "I'm sure they're here, it's John's, we've, he'll, she'd, don't 'S 'x '' ''s x'",
    "a \nb\n c \n\n d  \n  e",
    "números ١٢٣ ½ Ⅻ 42x 3.14 1,000",
    "Ünïcödé ΟΔΟΣ straße ﬁne ＡＢＣ",
    "emoji 😀😀 ok👍🏽! 🇫🇷",
    "中文字符 和 日本語のテキスト",
    "<pad><bos> <eos>text<unk>",
    "\u{a0}nbsp\u{3000}ideographic\u{2028}line\u{85}nel\u{200b}zwsp",
    "e\u{301} combining \u{301}alone",
    "\r\nwindows\r\nlines\r\n",
    "ends with space ",
    "trailing newline\n",
];

/// tinyshakespeare, CRLF-normalized as convlm reads corpora.
fn shakespeare() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| read_corpus(Path::new(SHAKESPEARE)).unwrap())
}

fn bpe(tok: Tokenizer) -> BpeTokenizer {
    match tok {
        Tokenizer::Bpe(b) => b,
        Tokenizer::Char(_) => panic!("train_bpe returned a character tokenizer"),
    }
}

/// BPE-2000 trained on tinyshakespeare, no normalization.
fn tok2000() -> &'static BpeTokenizer {
    static TOK: OnceLock<BpeTokenizer> = OnceLock::new();
    TOK.get_or_init(|| bpe(train_bpe(&[shakespeare()], 2000, Normalization::default()).unwrap()))
}

/// BPE-500 trained on the first 200 kB of tinyshakespeare with `normalization`.
fn small_tok(normalization: Normalization) -> BpeTokenizer {
    bpe(train_bpe(&[&shakespeare()[..200_000]], 500, normalization).unwrap())
}

fn lowercase_tok() -> &'static BpeTokenizer {
    static TOK: OnceLock<BpeTokenizer> = OnceLock::new();
    TOK.get_or_init(|| small_tok(Normalization { lowercase: true, ..Default::default() }))
}

fn all_normalizations_tok() -> &'static BpeTokenizer {
    static TOK: OnceLock<BpeTokenizer> = OnceLock::new();
    TOK.get_or_init(|| small_tok(Normalization { nfkc: true, lowercase: true, keep_punctuation: false }))
}

/// `base` with its `tokenizer.json` changed by `edit`.
fn variant(base: &BpeTokenizer, edit: impl FnOnce(&mut Value)) -> BpeTokenizer {
    let mut json: Value = serde_json::from_str(&base.to_json().unwrap()).unwrap();
    edit(&mut json);
    BpeTokenizer::from_json(&json.to_string(), Path::new("variant.json")).unwrap()
}

/// The trained BPE-2000 with `add_prefix_space: true` (still the fast path).
fn prefix_space_tok() -> &'static BpeTokenizer {
    static TOK: OnceLock<BpeTokenizer> = OnceLock::new();
    TOK.get_or_init(|| variant(tok2000(), |j| j["pre_tokenizer"]["add_prefix_space"] = json!(true)))
}

fn assert_same(tok: &BpeTokenizer, bulk: &BulkEncoder, text: &str) {
    assert_eq!(bulk.encode(text).unwrap(), tok.encode(text).unwrap(), "ids of {text:?}");
}

#[test]
fn shakespeare_whole_text_matches_encode() {
    let tok = tok2000();
    let bulk = BulkEncoder::new(tok).unwrap();
    assert_eq!(bulk.fallback_reason(), None);
    let text = shakespeare();
    let expected = tok.encode(text).unwrap();
    assert_eq!(bulk.encode(text).unwrap(), expected);
    assert_eq!(bulk.encode_parallel(text).unwrap(), expected);
    // A cache far too small for the text: emptied again and again, same ids.
    let tiny = BulkEncoder::new(tok).unwrap().with_cache_bytes(4096);
    assert_eq!(tiny.encode(text).unwrap(), expected);
    let none = BulkEncoder::new(tok).unwrap().with_cache_bytes(0);
    assert_eq!(none.encode(text).unwrap(), expected);
}

#[test]
fn shakespeare_lines_match_encode_in_a_batch() {
    let tok = tok2000();
    let bulk = BulkEncoder::new(tok).unwrap();
    let lines: Vec<&str> = shakespeare().split_inclusive('\n').collect();
    let batch = bulk.encode_batch(&lines).unwrap();
    assert_eq!(batch.len(), lines.len());
    for (line, ids) in lines.iter().zip(&batch) {
        assert_eq!(ids, &tok.encode(line).unwrap(), "ids of {line:?}");
    }
}

#[test]
fn tricky_strings_match_encode() {
    for tok in [tok2000(), prefix_space_tok(), lowercase_tok(), all_normalizations_tok()] {
        let bulk = BulkEncoder::new(tok).unwrap();
        assert_eq!(bulk.fallback_reason(), None);
        for text in TRICKY {
            assert_same(tok, &bulk, text);
        }
        assert_same(tok, &bulk, &TRICKY.concat());
    }
}

#[test]
fn special_token_text_is_ordinary_text() {
    let tok = tok2000();
    let bulk = BulkEncoder::new(tok).unwrap();
    let ids = bulk.encode("<pad> and <eos>").unwrap();
    assert!(!ids.iter().any(|&id| tok.specials().contains(id)));
    assert_same(tok, &bulk, "<pad> and <eos>");
}

#[test]
fn long_runs_match_encode() {
    let tok = tok2000();
    let bulk = BulkEncoder::new(tok).unwrap();
    for text in [
        format!("a{}b", " ".repeat(100_000)),
        format!("a{}", "\n".repeat(100_000)),
        format!("{}x", " \t\n".repeat(30_000)),
        "abc".repeat(50_000),
        "12345".repeat(20_000),
        "!?".repeat(50_000),
        format!("x{}y", "é".repeat(40_000)),
    ] {
        assert_same(tok, &bulk, &text);
    }
}

#[test]
fn chunks_at_split_points_match_the_whole_text() {
    let text = &shakespeare()[..300_000];
    for tok in [tok2000(), prefix_space_tok(), lowercase_tok(), all_normalizations_tok()] {
        let bulk = BulkEncoder::new(tok).unwrap();
        let whole = bulk.encode(text).unwrap();
        assert_eq!(whole, tok.encode(text).unwrap());
        for target in [1, 7, 100, 4096, 65_536] {
            let chunks = bulk.chunks(text, target);
            assert_eq!(chunks.concat(), text);
            if target == 4096 {
                assert!(chunks.len() > 50, "{} chunks", chunks.len());
            }
            let parts = bulk.encode_batch(&chunks).unwrap();
            assert_eq!(parts.concat(), whole, "chunks of {target} bytes");
        }
    }
}

#[test]
fn split_point_of_a_newline_text() {
    let bulk = BulkEncoder::new(tok2000()).unwrap();
    // " \n" ends a text as one piece but is cut in two before a word: no cut after "\n".
    let text = "a \nb";
    assert_eq!(bulk.split_point(text, 0), Some(1));
    assert_eq!(bulk.split_point(text, 2), None);
    assert_eq!(bulk.split_point("nospace", 0), None);
    assert_eq!(bulk.split_point("", 0), None);
    let prefix = BulkEncoder::new(prefix_space_tok()).unwrap();
    // With a prefix space the cut must be before U+0020.
    assert_eq!(bulk.split_point("a\n b c", 0), Some(1));
    assert_eq!(prefix.split_point("a\n b c", 0), Some(4));
}

/// A foreign WordPiece tokenizer (BERT pre-tokenizer, lowercase).
fn wordpiece() -> BpeTokenizer {
    let json = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null, "decoder": null,
        "model": {
            "type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[UNK]": 0, "the": 1, "##e": 2, "t": 3, "h": 4, "e": 5, "a": 6, "##a": 7, "##t": 8, "##h": 9, ",": 10}
        }
    });
    BpeTokenizer::from_json(&json.to_string(), Path::new("wordpiece.json")).unwrap()
}

#[test]
fn foreign_tokenizers_fall_back_to_the_library() {
    let base = tok2000();
    let foreign = [
        wordpiece(),
        variant(base, |j| j["pre_tokenizer"] = json!({"type": "Whitespace"})),
        variant(base, |j| j["pre_tokenizer"]["use_regex"] = json!(false)),
        variant(base, |j| {
            let id = j["model"]["vocab"].as_object().unwrap().len() + 10;
            j["added_tokens"].as_array_mut().unwrap().push(json!({
                "id": id, "content": "the", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": false
            }));
        }),
        variant(base, |j| j["model"]["dropout"] = json!(0.5)),
    ];
    let text = &shakespeare()[..5_000];
    for (i, tok) in foreign.iter().enumerate() {
        let bulk = BulkEncoder::new(tok).unwrap();
        assert!(bulk.fallback_reason().is_some(), "variant {i} should fall back");
        assert_eq!(bulk.split_point(text, 100), None);
        assert_eq!(bulk.chunks(text, 100), vec![text]);
        if i == 4 {
            continue; // dropout: random ids, nothing to compare
        }
        for text in TRICKY.iter().copied().chain([text, "the theater, hat"]) {
            assert_same(tok, &bulk, text);
        }
    }
}

#[test]
fn non_local_normalizer_has_no_split_point() {
    let strip = variant(tok2000(), |j| j["normalizer"] = json!({"type": "Strip", "strip_left": true, "strip_right": true}));
    let bulk = BulkEncoder::new(&strip).unwrap();
    assert_eq!(bulk.fallback_reason(), None);
    assert_eq!(bulk.split_point("a b c", 0), None);
    for text in TRICKY {
        assert_same(&strip, &bulk, text);
    }
}

/// Texts rich in the characters the GPT-2 regex treats specially.
fn tricky_text() -> impl Strategy<Value = String> {
    "[a-cA-C0-9 '\\n\\t\\rsdrlvemé٣½😀\u{a0}\u{301}\u{3000}.!<>]{0,60}"
}

proptest! {
    #![proptest_config(common::property::config(file!(), 128))]

    #[test]
    fn random_strings_match_encode(text in any::<String>(), tricky in tricky_text()) {
        for tok in [tok2000(), prefix_space_tok(), lowercase_tok(), all_normalizations_tok()] {
            let bulk = BulkEncoder::new(tok).unwrap();
            prop_assert_eq!(bulk.encode(&text).unwrap(), tok.encode(&text).unwrap());
            prop_assert_eq!(bulk.encode(&tricky).unwrap(), tok.encode(&tricky).unwrap());
        }
    }

    #[test]
    fn random_split_points_are_safe(text in tricky_text(), near in 0usize..60) {
        for tok in [tok2000(), prefix_space_tok(), lowercase_tok(), all_normalizations_tok()] {
            let bulk = BulkEncoder::new(tok).unwrap();
            if let Some(p) = bulk.split_point(&text, near) {
                prop_assert!(p >= near && p > 0 && p < text.len());
                let mut ids = bulk.encode(&text[..p]).unwrap();
                ids.extend(bulk.encode(&text[p..]).unwrap());
                prop_assert_eq!(ids, tok.encode(&text).unwrap(), "cut at {}", p);
            }
        }
    }
}
