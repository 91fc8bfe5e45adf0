//! Text normalization options shared by both tokenizers.

use serde::{Deserialize, Serialize};
use tokenizers::normalizers::{Lowercase, Replace, Sequence, NFKC};
use tokenizers::NormalizerWrapper;
use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// Regex (Rust `regex` syntax) of the characters removed when `keep_punctuation` is false:
/// the Unicode general category P (Pc, Pd, Ps, Pe, Pi, Pf, Po). Symbols such as `$` or `+`
/// (category S) are kept.
pub(crate) const PUNCTUATION_REGEX: &str = r"\p{P}";

/// How text is normalized before tokenization; everything is off by default.
///
/// The steps run in this order: Unicode NFKC, lowercase (each character by
/// [`char::to_lowercase`], so a final `Σ` becomes `σ` as in the `tokenizers` crate), then
/// removal of punctuation (Unicode category P, see [`Normalization::apply`]). A character
/// tokenizer applies them itself and stores the options in its JSON; a BPE tokenizer stores
/// the equivalent `tokenizers` normalizers (`NFKC`, `Lowercase`, `Replace(\p{P} → "")`) in
/// its `tokenizer.json`. Decoding cannot undo a normalization: `decode(encode(s))` returns
/// the normalized `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Normalization {
    /// Apply Unicode compatibility composition (NFKC): `ﬁ` → `fi`, full-width → ASCII…
    pub nfkc: bool,
    /// Lowercase every character.
    pub lowercase: bool,
    /// Keep punctuation; when false every character of Unicode category P is removed.
    pub keep_punctuation: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization { nfkc: false, lowercase: false, keep_punctuation: true }
    }
}

impl Normalization {
    /// Whether this normalization leaves every text unchanged.
    pub fn is_identity(&self) -> bool {
        !self.nfkc && !self.lowercase && self.keep_punctuation
    }

    /// Normalizes `text`: NFKC, then lowercase, then punctuation removal, each if enabled.
    pub fn apply(&self, text: &str) -> String {
        self.apply_cow(text).into_owned()
    }

    /// [`Normalization::apply`] without copying when there is nothing to do.
    pub fn apply_cow<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.is_identity() {
            return std::borrow::Cow::Borrowed(text);
        }
        let nfkc: String = if self.nfkc { text.nfkc().collect() } else { text.to_owned() };
        let mut out = String::with_capacity(nfkc.len());
        for c in nfkc.chars() {
            if !self.keep_punctuation && c.is_punctuation() {
                continue;
            }
            if self.lowercase {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// The equivalent `tokenizers` normalizer, `None` when nothing is enabled.
    pub(crate) fn to_hf(self) -> Result<Option<NormalizerWrapper>> {
        let mut steps: Vec<NormalizerWrapper> = Vec::new();
        if self.nfkc {
            steps.push(NFKC.into());
        }
        if self.lowercase {
            steps.push(Lowercase.into());
        }
        if !self.keep_punctuation {
            let replace = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(PUNCTUATION_REGEX.into()), "")
                .map_err(|e| Error::Tokenizer(format!("punctuation normalizer: {e}")))?;
            steps.push(replace.into());
        }
        Ok(match steps.len() {
            0 => None,
            1 => steps.pop(),
            _ => Some(Sequence::new(steps).into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_identity() {
        let n = Normalization::default();
        assert!(n.is_identity());
        assert_eq!(n.apply("Ünïcode, ﬁne!"), "Ünïcode, ﬁne!");
    }

    #[test]
    fn each_step() {
        let nfkc = Normalization { nfkc: true, ..Default::default() };
        assert_eq!(nfkc.apply("ﬁne ＡＢ"), "fine AB");
        let lower = Normalization { lowercase: true, ..Default::default() };
        assert_eq!(lower.apply("HeLLo ΟΔΟΣ"), "hello οδοσ");
        let nopunct = Normalization { keep_punctuation: false, ..Default::default() };
        assert_eq!(nopunct.apply("Hi, you! ($5 + «quote»)"), "Hi you $5 + quote");
    }

    #[test]
    fn matches_tokenizers_normalizer() {
        use tokenizers::{NormalizedString, Normalizer};
        let all = Normalization { nfkc: true, lowercase: true, keep_punctuation: false };
        let text = "ﬁne, ΟΔΟΣ — «ＡＢ» $5 (x_y) Straße!";
        let mut hf = NormalizedString::from(text);
        all.to_hf().unwrap().unwrap().normalize(&mut hf).unwrap();
        assert_eq!(all.apply(text), hf.get());
    }
}
