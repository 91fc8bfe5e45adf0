//! Fast encoding of large texts with a [`BpeTokenizer`], id for id equal to
//! [`BpeTokenizer::encode`]: see [`BulkEncoder`].

mod pretokenize;
mod word_cache;

use rayon::prelude::*;
use tokenizers::models::bpe::BPE;
use tokenizers::{Model, ModelWrapper, NormalizedString, Normalizer, NormalizerWrapper, PreTokenizerWrapper};

use self::pretokenize::{Classifier, Pieces, SplitRule};
use self::word_cache::{CachePool, WordCache};
use super::bpe::BpeTokenizer;
use super::normalize::PUNCTUATION_REGEX;
use crate::{Error, Result};

/// Default memory budget of one word cache (there is about one per thread).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Chunk length [`BulkEncoder::encode_parallel`] aims at.
const PARALLEL_CHUNK_BYTES: usize = 1 << 20;

/// What the GPT-2 byte-level alphabet maps each byte to (the `tokenizers` `bytes_char` table):
/// printable Latin-1 bytes to themselves, the others to U+0100 + n in byte order.
const BYTE_CHARS: [char; 256] = byte_chars();

const fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = (b >= b'!' as usize && b <= b'~' as usize) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        let code = if printable {
            b as u32
        } else {
            n += 1;
            256 + n - 1
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
}

/// The parts of a tokenizer the fast path runs.
struct FastPath<'a> {
    model: &'a BPE,
    normalizer: Option<&'a NormalizerWrapper>,
    prefix_space: bool,
    split: Option<SplitRule>,
    classifier: &'static Classifier,
    caches: CachePool,
}

enum Path<'a> {
    Fast(FastPath<'a>),
    /// The library's own encoding; the reason the fast path does not apply.
    Library(String),
}

/// Encodes large texts with a [`BpeTokenizer`]: the same ids as [`BpeTokenizer::encode`] on the
/// same text, tens of times faster on the tokenizers [`train_bpe`](super::train_bpe) makes.
///
/// The `tokenizers` crate builds an `Encoding` (a string and offsets per token) and runs a
/// backtracking regex: about 1–2 MB/s per thread. This encoder splits the text into the
/// pre-tokenizer's words with a hand-written scanner of the GPT-2 regex (character classes
/// taken from the crate's own regex engine), encodes each distinct word once with the
/// tokenizer's own BPE model (`Model::tokenize` on the byte-level-mapped word, so merges,
/// `unk`, byte fallback… stay the library's) and caches its ids. Shareable between threads:
/// [`BulkEncoder::encode_batch`] encodes chunks on the rayon pool. Each thread's word cache
/// holds at most [`DEFAULT_CACHE_BYTES`] (or [`BulkEncoder::with_cache_bytes`]); a full cache
/// is emptied and refilled, and words over 128 bytes are never cached.
///
/// # Which tokenizers take the fast path
/// All of these must hold (checked by [`BulkEncoder::new`]; see
/// [`BulkEncoder::fallback_reason`]):
/// * the model is BPE without dropout (`dropout` unset or 0);
/// * the pre-tokenizer is `ByteLevel` with `use_regex: true` (either `add_prefix_space`;
///   `trim_offsets` does not change ids);
/// * every added token is special and special-token text is encoded as ordinary text (always
///   so for a [`BpeTokenizer`] whose file has no non-special added tokens);
/// * no padding or truncation (a [`BpeTokenizer`] switches both off).
///
/// Any normalizer is allowed: it is the tokenizer's own, applied to the whole chunk first as
/// the library does (its `NormalizedString` takes about 17 bytes per byte of the chunk, so
/// keep chunks to a few MB). The post-processor does not matter: with
/// `add_special_tokens = false` no `tokenizers` post-processor changes ids. Every other
/// tokenizer (WordPiece, Unigram, another pre-tokenizer, BPE dropout, non-special added
/// tokens…) is encoded by the library itself, one call per chunk, which gives the same ids by
/// construction, at the library's speed.
///
/// # Chunk boundaries
/// Encoding a text chunk by chunk equals encoding it whole only at some cuts, and a newline is
/// not always one (`\s+(?!\S)` keeps `" \n"` together at the end of a text but cuts it in two
/// before a word). [`BulkEncoder::split_point`] finds a safe cut: between a non-space character
/// and a space character (`\s`), since no piece runs from a non-space into a space and every
/// piece is decided by the characters after its start only. The rule is narrowed to a
/// following U+0020 when the pre-tokenizer adds a prefix space (the right part then gets
/// none), and to an ASCII letter or digit followed by an ASCII space, tab, CR or LF when a known
/// local normalizer runs first (NFC, NFD, NFKC, NFKD, lowercase, convlm's punctuation removal,
/// sequences of them: they keep those characters and never act across them). With any other
/// normalizer (`Strip`, `Prepend`…) and on the library fallback no cut is known to be safe:
/// [`BulkEncoder::split_point`] returns `None` and [`BulkEncoder::chunks`] the whole text.
pub struct BulkEncoder<'a> {
    tokenizer: &'a BpeTokenizer,
    path: Path<'a>,
}

impl<'a> BulkEncoder<'a> {
    /// An encoder for `tokenizer`, on the fast path when its configuration allows.
    pub fn new(tokenizer: &'a BpeTokenizer) -> Result<Self> {
        let path = match fast_path_parts(tokenizer.inner()) {
            Ok((model, normalizer, prefix_space)) => {
                let split = match normalizer {
                    None => Some(SplitRule { space_only: prefix_space, ascii_only: false }),
                    Some(n) if is_local_normalizer(n) => Some(SplitRule { space_only: prefix_space, ascii_only: true }),
                    Some(_) => None,
                };
                Path::Fast(FastPath { model, normalizer, prefix_space, split, classifier: Classifier::global()?, caches: CachePool::new(DEFAULT_CACHE_BYTES) })
            }
            Err(reason) => Path::Library(reason),
        };
        Ok(BulkEncoder { tokenizer, path })
    }

    /// Sets the memory budget of each word cache, in bytes (0 disables caching).
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        if let Path::Fast(fast) = &mut self.path {
            fast.caches = CachePool::new(bytes);
        }
        self
    }

    /// `None` on the fast path, else why the library's own (slower) encoding is used.
    pub fn fallback_reason(&self) -> Option<&str> {
        match &self.path {
            Path::Fast(_) => None,
            Path::Library(reason) => Some(reason),
        }
    }

    /// Encodes `text`; the same ids as [`BpeTokenizer::encode`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, &mut out)?;
        Ok(out)
    }

    /// Encodes `text` and appends its ids to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        match &self.path {
            Path::Fast(fast) => fast.caches.with_cache(|cache| fast.encode(text, cache, out)),
            Path::Library(_) => {
                out.extend(self.tokenizer.encode(text)?);
                Ok(())
            }
        }
    }

    /// Encodes every chunk, in parallel on the rayon pool; the result is in the chunks' order.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, chunks: &[S]) -> Result<Vec<Vec<u32>>> {
        chunks.par_iter().map(|chunk| self.encode(chunk.as_ref())).collect()
    }

    /// The first byte offset at or after `near` where `text` may be cut so that encoding
    /// `text[..p]` and `text[p..]` apart gives the ids of `text` (see the module
    /// documentation); `None` if there is none after `near`, or if this tokenizer has no known
    /// safe cut.
    pub fn split_point(&self, text: &str, near: usize) -> Option<usize> {
        match &self.path {
            Path::Fast(FastPath { split: Some(rule), classifier, .. }) => rule.find(classifier, text, near),
            _ => None,
        }
    }

    /// Cuts `text` at safe points ([`BulkEncoder::split_point`]) into chunks of about
    /// `target_bytes` (longer where no cut is near, the whole text when none is known).
    pub fn chunks<'t>(&self, text: &'t str, target_bytes: usize) -> Vec<&'t str> {
        let mut chunks = Vec::new();
        let mut rest = text;
        while rest.len() > target_bytes {
            match self.split_point(rest, target_bytes.max(1)) {
                Some(p) => {
                    let (chunk, tail) = rest.split_at(p);
                    chunks.push(chunk);
                    rest = tail;
                }
                None => break,
            }
        }
        if !rest.is_empty() || chunks.is_empty() {
            chunks.push(rest);
        }
        chunks
    }

    /// Encodes `text` in about 1 MiB chunks cut at safe points ([`BulkEncoder::chunks`]), in
    /// parallel; the same ids as [`BulkEncoder::encode`] on the whole text.
    pub fn encode_parallel(&self, text: &str) -> Result<Vec<u32>> {
        let parts = self.encode_batch(&self.chunks(text, PARALLEL_CHUNK_BYTES))?;
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            out.extend_from_slice(&part);
        }
        Ok(out)
    }
}

impl FastPath<'_> {
    /// Normalizes `text` (the whole of it, as the library does), then encodes its words.
    fn encode(&self, text: &str, cache: &mut WordCache, out: &mut Vec<u32>) -> Result<()> {
        // The library drops empty texts before normalizing, and empty normalized texts after.
        if text.is_empty() {
            return Ok(());
        }
        let normalized;
        let mut text = text;
        if let Some(normalizer) = self.normalizer {
            let mut n = NormalizedString::from(text);
            // The library ignores a normalizer's error (and keeps what it did so far).
            let _ = normalizer.normalize(&mut n);
            normalized = n;
            text = normalized.get();
            if text.is_empty() {
                return Ok(());
            }
        }
        let prefixed;
        if self.prefix_space && !text.starts_with(' ') {
            prefixed = format!(" {text}");
            text = &prefixed;
        }
        let mut mapped = String::new();
        for word in Pieces::new(text, self.classifier) {
            let word = word.as_bytes();
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let start = out.len();
            mapped.clear();
            mapped.extend(word.iter().map(|&b| BYTE_CHARS[usize::from(b)]));
            let tokens = self.model.tokenize(&mapped).map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
            out.extend(tokens.iter().map(|t| t.id));
            cache.insert(word, &out[start..]);
        }
        Ok(())
    }
}

/// The model, normalizer and prefix-space setting of a tokenizer the fast path can run, or
/// the reason it cannot.
fn fast_path_parts(tok: &tokenizers::Tokenizer) -> std::result::Result<(&BPE, Option<&NormalizerWrapper>, bool), String> {
    let model = match tok.get_model() {
        ModelWrapper::BPE(bpe) => bpe,
        ModelWrapper::WordPiece(_) => return Err("the model is WordPiece, not BPE".into()),
        ModelWrapper::WordLevel(_) => return Err("the model is WordLevel, not BPE".into()),
        ModelWrapper::Unigram(_) => return Err("the model is Unigram, not BPE".into()),
    };
    if model.dropout.is_some_and(|p| p != 0.0) {
        return Err("BPE dropout makes encoding random".into());
    }
    let prefix_space = match tok.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::ByteLevel(b)) if b.use_regex => b.add_prefix_space,
        Some(PreTokenizerWrapper::ByteLevel(_)) => return Err("the ByteLevel pre-tokenizer does not use its regex".into()),
        Some(_) => return Err("the pre-tokenizer is not ByteLevel".into()),
        None => return Err("there is no pre-tokenizer".into()),
    };
    let added = tok.get_added_tokens_decoder();
    if added.values().any(|t| !t.special) {
        return Err("the tokenizer has non-special added tokens, which split the text".into());
    }
    if !added.is_empty() && !tok.get_encode_special_tokens() {
        return Err("special-token text is split out of the text".into());
    }
    if tok.get_padding().is_some() || tok.get_truncation().is_some() {
        return Err("padding or truncation is on".into());
    }
    Ok((model, tok.get_normalizer(), prefix_space))
}

/// Whether `normalizer` is built only of normalizers that act on each character (or, for the
/// Unicode normal forms, never across an ASCII space that follows an ASCII letter or digit),
/// and keep ASCII letters, digits and spaces ASCII letters, digits and spaces.
fn is_local_normalizer(normalizer: &NormalizerWrapper) -> bool {
    fn local(json: &serde_json::Value) -> bool {
        match json.get("type").and_then(|t| t.as_str()) {
            Some("NFC" | "NFD" | "NFKC" | "NFKD" | "Lowercase") => true,
            Some("Sequence") => json.get("normalizers").and_then(|n| n.as_array()).is_some_and(|steps| steps.iter().all(local)),
            Some("Replace") => {
                json.get("pattern").and_then(|p| p.get("Regex")).and_then(|r| r.as_str()) == Some(PUNCTUATION_REGEX)
                    && json.get("content").and_then(|c| c.as_str()) == Some("")
            }
            _ => false,
        }
    }
    serde_json::to_value(normalizer).is_ok_and(|json| local(&json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    #[test]
    fn byte_chars_are_the_byte_level_alphabet() {
        let ours: std::collections::HashSet<char> = BYTE_CHARS.iter().copied().collect();
        assert_eq!(ours.len(), 256);
        assert_eq!(ours, ByteLevel::alphabet().into_iter().collect());
        assert_eq!(BYTE_CHARS[usize::from(b' ')], 'Ġ');
        assert_eq!(BYTE_CHARS[usize::from(b'\n')], 'Ċ');
        assert_eq!(BYTE_CHARS[usize::from(b'a')], 'a');
    }

    #[test]
    fn convlm_normalizers_are_local() {
        use super::super::Normalization;
        for bits in 1..8u8 {
            let n = Normalization { nfkc: bits & 1 != 0, lowercase: bits & 2 != 0, keep_punctuation: bits & 4 == 0 };
            let hf = n.to_hf().unwrap().unwrap();
            assert!(is_local_normalizer(&hf), "{n:?}");
        }
        let strip: NormalizerWrapper = tokenizers::normalizers::Strip::new(true, true).into();
        assert!(!is_local_normalizer(&strip));
    }
}
