//! Byte-level BPE tokenizer, trained and stored with the Hugging Face `tokenizers` crate.

use std::path::Path;
use std::str::FromStr;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper};

use super::normalize::Normalization;
use super::{SpecialTokens, SPECIAL_TOKEN_NAMES, UNK};
use crate::cancel::CancelToken;
use crate::{Error, Result};

/// Number of byte tokens every byte-level vocabulary starts with.
const BYTE_ALPHABET: usize = 256;

/// The largest vocabulary a BPE tokenizer is trained to: four times that of the largest
/// tokenizers in use (about 256k ids); the trainer sizes tables by it, so
/// `--vocab-size 18446744073709551615` must stop here, not in an allocation.
pub const MAX_BPE_VOCAB: usize = 1 << 20;

/// A tokenizer of the `tokenizers` crate (its `tokenizer.json` format).
///
/// [`train_bpe`] makes a byte-level BPE (GPT-2 style: `ByteLevel` pre-tokenizer with its regex,
/// no prefix space, `ByteLevel` decoder), so `decode(encode(s)) == s` for every string when no
/// normalization is set. Any `tokenizer.json` written by the `tokenizers` library loads
/// (WordPiece, Unigram… too), with these adjustments made at load time:
/// * the special tokens `<pad> <bos> <eos> <unk>` that the file lacks are added as special
///   tokens after its vocabulary (so ids stay those of the file);
/// * padding and truncation settings are switched off (batching is convlm's job);
/// * a file without a decoder whose pre-tokenizer is `ByteLevel` or `Metaspace` gets the
///   matching decoder, so decoded text never shows the byte-level markers (`Ġ`, `Ċ`) or `▁`;
/// * special-token text inside the input (a literal `"<pad>"`) is encoded as ordinary text,
///   never as the special token, so a corpus cannot inject control tokens.
#[derive(Debug, Clone)]
pub struct BpeTokenizer {
    /// Boxed: the `tokenizers` struct is large and [`Tokenizer`] is passed around by value.
    inner: Box<tokenizers::Tokenizer>,
    specials: SpecialTokens,
    /// Largest id plus one (ids of a foreign file need not be contiguous).
    vocab_size: usize,
}

/// Errors unless `vocab_size` is one byte-level BPE can be trained to.
fn check_vocab_size(vocab_size: usize) -> Result<()> {
    let minimum = BYTE_ALPHABET + SPECIAL_TOKEN_NAMES.len();
    if vocab_size < minimum {
        return Err(Error::config(
            "vocab_size",
            format!("{vocab_size} is too small for byte-level BPE: needs at least {minimum} (256 bytes + 4 special tokens)"),
        ));
    }
    if vocab_size > MAX_BPE_VOCAB {
        return Err(Error::config("vocab_size", format!("{vocab_size} is more than the {MAX_BPE_VOCAB} tokens a BPE tokenizer is trained to")));
    }
    Ok(())
}

/// Maps any error of the `tokenizers` crate to [`Error::Tokenizer`].
fn hf_error(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Tokenizer(format!("{what}: {e}"))
}

/// Refuses BPE merges that the `tokenizers` crate (0.22) would slice out of bounds while
/// loading: with a `continuing_subword_prefix` of n bytes it takes `second[n..]` of every
/// merge, which panics when the second token is shorter or byte n is inside a character.
fn check_merges(text: &str) -> std::result::Result<(), String> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else { return Ok(()) }; // the library reports bad JSON
    let model = &doc["model"];
    let prefix = match model.get("continuing_subword_prefix") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => p.len(),
        _ => return Ok(()),
    };
    let Some(merges) = model.get("merges").and_then(|m| m.as_array()) else { return Ok(()) };
    for (i, merge) in merges.iter().enumerate() {
        let second = match merge {
            serde_json::Value::String(s) => s.split_once(' ').map(|(_, b)| b.to_string()),
            serde_json::Value::Array(pair) => pair.get(1).and_then(|b| b.as_str()).map(str::to_string),
            _ => None,
        };
        if let Some(b) = second {
            if !b.is_char_boundary(prefix.min(b.len())) || b.len() < prefix {
                return Err(format!("merge {i} (`{b}`) cannot carry the continuing_subword_prefix of {prefix} bytes"));
            }
        }
    }
    Ok(())
}

/// The decoder that undoes a pre-tokenizer's markers: `ByteLevel` bytes-as-characters, or
/// `Metaspace`'s `▁` (also inside a `Sequence`); `None` for pre-tokenizers that leave none.
fn decoder_for(pre: &PreTokenizerWrapper) -> Option<DecoderWrapper> {
    match pre {
        PreTokenizerWrapper::ByteLevel(_) => Some(DecoderWrapper::from(ByteLevel::default())),
        PreTokenizerWrapper::Metaspace(m) => Some(DecoderWrapper::from(m.clone())),
        PreTokenizerWrapper::Sequence(seq) => seq.as_ref().iter().find_map(decoder_for),
        _ => None,
    }
}

impl BpeTokenizer {
    /// Trains a byte-level BPE tokenizer of `vocab_size` ids (the 4 special tokens and the 256 byte
    /// tokens included, so `vocab_size` must be at least 260) on the lines of `texts`.
    ///
    /// Training is deterministic: the same texts and settings give the same `tokenizer.json`.
    /// The vocabulary can end up smaller than `vocab_size` when the corpus has too few distinct
    /// pairs to merge.
    pub fn train<S: AsRef<str> + Sync>(texts: &[S], vocab_size: usize, normalization: Normalization) -> Result<Self> {
        Self::train_from_lines(texts.iter().flat_map(|t| t.as_ref().split_inclusive('\n')), vocab_size, normalization)
    }

    /// [`BpeTokenizer::train`] from an iterator over the lines of a corpus (each with its line
    /// break), consumed once: the trainer keeps word counts, so a corpus read as it goes never
    /// sits in memory whole.
    pub fn train_from_lines<I, S>(lines: I, vocab_size: usize, normalization: Normalization) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        check_vocab_size(vocab_size)?;
        let model = BPE::builder().unk_token(UNK.into()).build().map_err(hf_error("cannot create the BPE model"))?;
        let mut tok = tokenizers::Tokenizer::new(model);
        tok.with_normalizer(normalization.to_hf()?)
            .with_pre_tokenizer(Some(PreTokenizerWrapper::from(ByteLevel::new(false, true, true))))
            .with_decoder(Some(DecoderWrapper::from(ByteLevel::default())));
        tok.set_encode_special_tokens(true);
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(SPECIAL_TOKEN_NAMES.iter().map(|s| AddedToken::from(*s, true)).collect())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut trainer = TrainerWrapper::from(trainer);
        let has_text = std::sync::atomic::AtomicBool::new(false);
        let lines = lines.inspect(|l| {
            if !l.as_ref().trim().is_empty() {
                has_text.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        tok.train(&mut trainer, lines).map_err(hf_error("BPE training failed"))?;
        if !has_text.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Data("cannot train a BPE tokenizer on an empty corpus".into()));
        }
        BpeTokenizer::from_hf(tok)
    }

    /// [`BpeTokenizer::train_from_lines`] on a thread of its own, fed with `blocks` of whole
    /// lines as they come (two in flight), that returns [`Error::Cancelled`] as soon as
    /// `cancel` is cancelled — between blocks, or while the trainer computes its merges (it
    /// is left to finish on its thread and its result is dropped). An error of `blocks`
    /// (a bad file) is returned the same way.
    pub fn train_from_blocks(
        blocks: impl Iterator<Item = Result<String>>,
        vocab_size: usize,
        normalization: Normalization,
        cancel: &CancelToken,
    ) -> Result<Self> {
        check_vocab_size(vocab_size)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bpe-trainer".into())
            .spawn(move || {
                let lines = rx.into_iter().flat_map(|block| block.split_inclusive('\n').map(str::to_string).collect::<Vec<_>>());
                let _ = done_tx.send(Self::train_from_lines(lines, vocab_size, normalization));
            })
            .map_err(|e| Error::Tokenizer(format!("cannot start the BPE trainer: {e}")))?;
        for block in blocks {
            cancel.check()?;
            // A trainer that stopped early (an error) says why below.
            if tx.send(block?).is_err() {
                break;
            }
        }
        drop(tx);
        loop {
            match done_rx.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok(trained) => return trained,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => cancel.check()?,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(Error::Tokenizer("the BPE trainer stopped without a result".into())),
            }
        }
    }

    /// Wraps a `tokenizers` tokenizer: adds missing special tokens, switches padding and
    /// truncation off, and looks the special-token ids up by name.
    fn from_hf(mut inner: tokenizers::Tokenizer) -> Result<Self> {
        let missing: Vec<AddedToken> =
            SPECIAL_TOKEN_NAMES.iter().filter(|name| inner.token_to_id(name).is_none()).map(|name| AddedToken::from(*name, true)).collect();
        inner.add_special_tokens(&missing);
        inner.set_encode_special_tokens(true);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(hf_error("cannot switch truncation off"))?;
        if inner.get_decoder().is_none() {
            let decoder = inner.get_pre_tokenizer().and_then(decoder_for);
            inner.with_decoder(decoder);
        }
        let specials = SpecialTokens::lookup(|name| inner.token_to_id(name)).map_err(Error::Tokenizer)?;
        let vocab_size = inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
        Ok(BpeTokenizer { inner: Box::new(inner), specials, vocab_size })
    }

    /// Largest id plus one (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Ids of the special tokens.
    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    /// Normalizes and encodes `text`; no special tokens are added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(hf_error("encoding failed"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes `ids`, skipping special tokens and ids outside the vocabulary; byte sequences
    /// that are not UTF-8 decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_else(|_| char::REPLACEMENT_CHARACTER.to_string())
    }

    /// The text of one token as it reads in decoded output (a special token's name, `<id N>`
    /// for an id outside the vocabulary).
    pub fn token_text(&self, id: u32) -> String {
        match self.inner.id_to_token(id) {
            None => format!("<id {id}>"),
            Some(name) if self.specials.contains(id) => name,
            Some(name) => match self.inner.decode(&[id], false) {
                Ok(text) if !text.is_empty() => text,
                _ => name,
            },
        }
    }

    /// The `tokenizer.json` content, in the `tokenizers` crate's format.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(hf_error("cannot serialize the BPE tokenizer"))
    }

    /// Parses a `tokenizers` JSON file; errors name `source`.
    pub fn from_json(text: &str, source: &Path) -> Result<Self> {
        check_merges(text).map_err(|msg| Error::bad_file(source, msg))?;
        // The library panics on some malformed files (fuzzing found merges it slices on a
        // byte that is not a character boundary); `check_merges` refuses the known ones, and
        // a panic that still happens becomes an error naming the file instead of an abort.
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(text));
        let inner = match parsed {
            Ok(result) => result.map_err(|e| Error::bad_file(source, format!("not a tokenizers tokenizer.json: {e}")))?,
            Err(_) => return Err(Error::bad_file(source, "the tokenizers library could not read this tokenizer.json (it panicked)")),
        };
        Self::from_hf(inner).map_err(|e| Error::bad_file(source, e.to_string()))
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
