//! Samples a person can read for BPE runs: `convlm sample` decodes with the tokenizer's
//! decoder (no byte-level `Ġ`/`Ċ` or SentencePiece `▁` markers, also for a tokenizer.json
//! saved without a decoder), and `--prompt` is encoded as the training text was, with the
//! continuation decoded in the prompt's context.

mod common;

use std::path::Path;

use common::cli::{convlm, s, succeeds, text, train_args};
use convlm::data::{read_corpus, train_bpe, Normalization, Tokenizer};
use convlm::run::samples::decode_continuation;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::AddedToken;

/// The first `n` bytes of tinyshakespeare (ASCII).
fn shakespeare(n: usize) -> String {
    let text = read_corpus(&common::shared("data/tinyshakespeare.txt")).unwrap();
    text[..n].to_string()
}

/// A SentencePiece-style BPE (`Metaspace` pre-tokenizer, `▁` for spaces), as the seed notebook's
/// `SentencePieceBPETokenizer` makes, saved like a file whose decoder was left out.
fn metaspace_json(corpus: &str) -> String {
    let model = BPE::builder().unk_token("<unk>".into()).build().unwrap();
    let mut hf = tokenizers::Tokenizer::new(model);
    hf.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)));
    let trainer = BpeTrainerBuilder::new().vocab_size(400).show_progress(false).special_tokens(vec![AddedToken::from("<unk>", true)]).build();
    let mut trainer = TrainerWrapper::from(trainer);
    hf.train(&mut trainer, corpus.lines()).unwrap();
    let json = hf.to_string(false).unwrap();
    assert!(json.contains("\"decoder\":null"), "the file has no decoder");
    json
}

/// A byte-level BPE trained by convlm, saved without its decoder.
fn byte_level_json_without_decoder(corpus: &str) -> String {
    let tok = train_bpe(&[corpus], 400, Normalization::default()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&tok.to_json().unwrap()).unwrap();
    json["decoder"] = serde_json::Value::Null;
    json.to_string()
}

fn has_markers(text: &str) -> bool {
    text.contains(['Ġ', 'Ċ', '▁'])
}

#[test]
fn a_tokenizer_file_without_a_decoder_decodes_to_plain_text() {
    let corpus = shakespeare(50_000);
    let text = "ROMEO:\nWhat light through yonder window breaks?\n\nJULIET: It is my lady.";
    let byte_level = Tokenizer::from_json(&byte_level_json_without_decoder(&corpus), Path::new("bl.json")).unwrap();
    assert_eq!(byte_level.decode(&byte_level.encode(text).unwrap()), text);
    assert_eq!(byte_level.token_text(byte_level.encode(" the").unwrap()[0]), " the");

    let metaspace = Tokenizer::from_json(&metaspace_json(&corpus), Path::new("sp.json")).unwrap();
    let words = "i think the king is come";
    let decoded = metaspace.decode(&metaspace.encode(words).unwrap());
    assert_eq!(decoded, words);
    assert!(!has_markers(&decoded), "{decoded}");
}

#[test]
fn a_continuation_is_decoded_in_the_prompts_context() {
    let tok = Tokenizer::from_json(&metaspace_json(&shakespeare(50_000)), Path::new("sp.json")).unwrap();
    let prompt = tok.encode("i think").unwrap();
    let whole = tok.encode("i think the king").unwrap();
    assert_eq!(&whole[..prompt.len()], &prompt[..], "words are tokenized alone");
    let generated = &whole[prompt.len()..];
    // Decoded alone, the first generated token loses its space (Metaspace strips it at the
    // start of a text): "i think" + "the king" would glue the words.
    assert_eq!(tok.decode(generated), "the king");
    assert_eq!(decode_continuation(&tok, &prompt, generated), " the king");
    assert_eq!(decode_continuation(&tok, &[], generated), "the king");

    // Byte-level BPE: the continuation of a prompt is the rest of the text, exactly.
    let bl = train_bpe(&[shakespeare(50_000)], 400, Normalization::default()).unwrap();
    let prompt = bl.encode("ROMEO: Let's go").unwrap();
    let whole = bl.encode("ROMEO: Let's go, café!\n").unwrap();
    assert_eq!(&whole[..prompt.len()], &prompt[..]);
    assert_eq!(decode_continuation(&bl, &prompt, &whole[prompt.len()..]), ", café!\n");
}

#[test]
fn sample_on_a_bpe_run_prints_text_without_markers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shakespeare.txt");
    std::fs::write(&data, shakespeare(100_000)).unwrap();
    let sp = dir.path().join("sp.json");
    std::fs::write(&sp, metaspace_json(&shakespeare(100_000))).unwrap();
    let tiny = "--model hyena --dataset stream --steps 3 --eval-every 3 --batch-size 4 --set data.block_size=32 --set model.max_len=32 \
                --set model.d_model=16 --set model.n_layers=1 --set train.eval_batches=1";
    for (name, tokenizer) in [("bytes", "bpe --set data.bpe_vocab_size=400".to_string()), ("pieces", s(&sp).to_string())] {
        let run = dir.path().join(name);
        succeeds(&train_args(&data, &run, &format!("{tiny} --tokenizer {tokenizer}")));
        for prompt in ["ROMEO: Let's go", "i think"] {
            let out = convlm(&["sample", "--run", s(&run), "-n", "3", "--max-tokens", "30", "--seed", "7", "--prompt", prompt]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            let samples = text(&out.stdout);
            assert!(samples.starts_with(prompt), "{name}: {samples}");
            assert!(!has_markers(&samples), "{name}: byte-level or SentencePiece markers in\n{samples}");
            assert!(samples.chars().filter(|c| !c.is_whitespace()).count() > prompt.len() + 10, "{name}: nothing sampled:\n{samples}");
        }
    }
}
