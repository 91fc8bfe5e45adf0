//! Character-level tokenizer: one id per Unicode scalar value seen in the corpus, plus the
//! four named special tokens.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::normalize::Normalization;
use super::{SpecialTokens, BOS, EOS, PAD, SPECIAL_TOKEN_NAMES, UNK};
use crate::{Error, Result};

/// The `"type"` value that marks a character tokenizer file.
pub(crate) const CHAR_TYPE: &str = "char";
/// An ASCII table entry for a character outside the vocabulary.
const NO_ID: u32 = u32::MAX;

/// Version of the character tokenizer JSON format written by [`CharTokenizer::to_json`].
const FORMAT_VERSION: u32 = 1;

/// What encoding does with a character that is not in the vocabulary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPolicy {
    /// Encode it as `<unk>` (the default).
    #[default]
    MapToUnk,
    /// Fail with an error naming the character and its position.
    Reject,
}

/// A character tokenizer: ids index `vocab`, where the special tokens come first (in the order
/// of [`SPECIAL_TOKEN_NAMES`]) followed by the corpus characters in code-point order.
///
/// Its `tokenizer.json`:
///
/// ```json
/// {"type": "char", "version": 1,
///  "vocab": ["<pad>", "<bos>", "<eos>", "<unk>", "a", "b", ...],
///  "special_tokens": {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"},
///  "normalization": {"nfkc": false, "lowercase": false, "keep_punctuation": true},
///  "unknown": "map_to_unk"}
/// ```
/// A token's id is its index in `vocab`; `special_tokens` says which entries are special
/// (by name, never by id); every other entry is exactly one character. `normalization` and
/// `unknown` may be left out (defaults: off, `map_to_unk`).
#[derive(Debug, Clone, PartialEq)]
pub struct CharTokenizer {
    /// Token text by id: a special token's name or exactly one character.
    vocab: Vec<String>,
    /// Character → id for the non-special entries.
    index: HashMap<char, u32>,
    /// Id of each ASCII character, [`NO_ID`] when it is not in the vocabulary (the fast path
    /// of [`CharTokenizer::encode`]: a table lookup instead of a hash per character).
    ascii: Box<[u32; 128]>,
    specials: SpecialTokens,
    normalization: Normalization,
    unknown: UnknownPolicy,
}

/// The on-disk form of a character tokenizer (format on [`CharTokenizer`]).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CharTokenizerFile {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    vocab: Vec<String>,
    special_tokens: SpecialNames,
    #[serde(default)]
    normalization: Normalization,
    #[serde(default)]
    unknown: UnknownPolicy,
}

/// Names of the special tokens in a character tokenizer file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecialNames {
    pad: String,
    bos: String,
    eos: String,
    unk: String,
}

impl CharTokenizer {
    /// Builds the vocabulary from every character of the normalized `text`, line breaks
    /// included (an empty text gives a vocabulary of only the special tokens). Use this for
    /// stream datasets, where `\n` is a token.
    pub fn from_corpus(text: &str, normalization: Normalization, unknown: UnknownPolicy) -> Self {
        Self::from_chars(normalization.apply(text).chars().collect(), normalization, unknown)
    }

    /// Builds the vocabulary from the characters of the lines of `text` (LF or CRLF), without
    /// the line breaks. Use this for line and grid datasets, which never encode a line break:
    /// names.txt gives 26 letters + 4 special tokens.
    pub fn from_lines(text: &str, normalization: Normalization, unknown: UnknownPolicy) -> Self {
        let chars = text.lines().flat_map(|line| normalization.apply(line).chars().collect::<Vec<_>>());
        Self::from_chars(chars.collect(), normalization, unknown)
    }

    /// The special tokens followed by `chars` in code-point order (an alphabet collected
    /// elsewhere, e.g. while a corpus is read in blocks).
    pub fn from_alphabet(chars: BTreeSet<char>, normalization: Normalization, unknown: UnknownPolicy) -> Self {
        Self::from_chars(chars, normalization, unknown)
    }

    /// The special tokens followed by `chars` in code-point order.
    fn from_chars(chars: BTreeSet<char>, normalization: Normalization, unknown: UnknownPolicy) -> Self {
        let vocab = SPECIAL_TOKEN_NAMES.iter().map(|s| s.to_string()).chain(chars.into_iter().map(String::from)).collect();
        Self::from_parts(vocab, [PAD, BOS, EOS, UNK].map(String::from), normalization, unknown)
            .unwrap_or_else(|e| unreachable!("single characters never clash with special names: {e}"))
    }

    /// Validates a vocabulary and builds the lookup tables.
    fn from_parts(vocab: Vec<String>, special_names: [String; 4], normalization: Normalization, unknown: UnknownPolicy) -> std::result::Result<Self, String> {
        if u32::try_from(vocab.len()).is_err() {
            return Err(format!("vocabulary of {} entries is too large", vocab.len()));
        }
        let mut special_ids = HashMap::new();
        let mut index = HashMap::new();
        for (id, token) in vocab.iter().enumerate() {
            let id = id as u32;
            if special_names.contains(token) {
                if special_ids.insert(token.as_str(), id).is_some() {
                    return Err(format!("special token {token:?} appears twice in vocab"));
                }
                continue;
            }
            let mut chars = token.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(format!("vocab entry {id} ({token:?}) is not a single character"));
            };
            if index.insert(c, id).is_some() {
                return Err(format!("character {c:?} appears twice in vocab"));
            }
        }
        let get = |name: &String| special_ids.get(name.as_str()).copied().ok_or_else(|| format!("special token {name:?} missing from the vocabulary"));
        let [pad, bos, eos, unk] = &special_names;
        let specials = SpecialTokens { pad: get(pad)?, bos: get(bos)?, eos: get(eos)?, unk: get(unk)? };
        if special_ids.len() != 4 {
            return Err("the four special tokens must have four different names".into());
        }
        let mut ascii = [NO_ID; 128];
        for (&c, &id) in &index {
            if c.is_ascii() {
                ascii[c as usize] = id;
            }
        }
        Ok(CharTokenizer { vocab, index, ascii: Box::new(ascii), specials, normalization, unknown })
    }

    /// Number of ids (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Ids of the special tokens.
    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    /// The normalization applied before encoding.
    pub fn normalization(&self) -> Normalization {
        self.normalization
    }

    /// What encoding does with characters outside the vocabulary.
    pub fn unknown_policy(&self) -> UnknownPolicy {
        self.unknown
    }

    /// Normalizes `text` and maps every character to its id; no special tokens are added.
    /// A character outside the vocabulary becomes `<unk>`, or with [`UnknownPolicy::Reject`]
    /// an [`Error::Tokenizer`] naming the character, its code point and its character offset
    /// in the normalized text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let text = self.normalization.apply_cow(text);
        if text.is_ascii() {
            // One table lookup per byte.
            let ids: Vec<u32> = text.bytes().map(|b| self.ascii[b as usize]).collect();
            if !ids.contains(&NO_ID) {
                return Ok(ids);
            }
        }
        let mut ids = Vec::with_capacity(text.len());
        for (pos, c) in text.chars().enumerate() {
            let id = if c.is_ascii() { self.ascii[c as usize] } else { self.index.get(&c).copied().unwrap_or(NO_ID) };
            ids.push(match (id, self.unknown) {
                (NO_ID, UnknownPolicy::MapToUnk) => self.specials.unk,
                (NO_ID, UnknownPolicy::Reject) => {
                    return Err(Error::Tokenizer(format!("character {c:?} (U+{:04X}) at character offset {pos} is not in the vocabulary", c as u32)))
                }
                (id, _) => id,
            });
        }
        Ok(ids)
    }

    /// Concatenates the characters of `ids`, skipping the special tokens; an id outside the
    /// vocabulary decodes to U+FFFD (the replacement character).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().filter(|&&id| !self.specials.contains(id)).map(|&id| self.vocab.get(id as usize).map_or("\u{FFFD}", String::as_str)).collect()
    }

    /// The text of one token: its character, a special token's name, or `<id N>` for an id
    /// outside the vocabulary.
    pub fn token_text(&self, id: u32) -> String {
        self.vocab.get(id as usize).cloned().unwrap_or_else(|| format!("<id {id}>"))
    }

    /// The `tokenizer.json` content (format on [`CharTokenizer`]).
    pub fn to_json(&self) -> Result<String> {
        let name = |id: u32| self.vocab[id as usize].clone();
        let file = CharTokenizerFile {
            kind: CHAR_TYPE.into(),
            version: FORMAT_VERSION,
            vocab: self.vocab.clone(),
            special_tokens: SpecialNames {
                pad: name(self.specials.pad),
                bos: name(self.specials.bos),
                eos: name(self.specials.eos),
                unk: name(self.specials.unk),
            },
            normalization: self.normalization,
            unknown: self.unknown,
        };
        serde_json::to_string_pretty(&file).map_err(|e| Error::Tokenizer(format!("cannot serialize character tokenizer: {e}")))
    }

    /// Parses a character tokenizer file; errors name `source`.
    pub fn from_json(text: &str, source: &Path) -> Result<Self> {
        let file: CharTokenizerFile = serde_json::from_str(text).map_err(|e| Error::bad_file(source, format!("not a character tokenizer: {e}")))?;
        if file.kind != CHAR_TYPE {
            return Err(Error::bad_file(source, format!("tokenizer type {:?}, expected \"char\"", file.kind)));
        }
        if file.version != FORMAT_VERSION {
            return Err(Error::bad_file(source, format!("character tokenizer version {} (this convlm reads {FORMAT_VERSION})", file.version)));
        }
        let SpecialNames { pad, bos, eos, unk } = file.special_tokens;
        Self::from_parts(file.vocab, [pad, bos, eos, unk], file.normalization, file.unknown).map_err(|msg| Error::bad_file(source, msg))
    }
}
