//! The GPT-2 pre-tokenizer of the `tokenizers` crate's `ByteLevel`, as a hand-written scanner.
//!
//! `tokenizers` 0.22 (feature `fancy-regex`) splits the text with the regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, leftmost-first,
//! every piece kept (`SplitDelimiterBehavior::Isolated`); every character matches some
//! alternative, so the pieces cover the text. [`Pieces`] yields the same pieces without the
//! regex engine. The character classes (`\p{L}`, `\p{N}`, `\s`) are taken from the crate's own
//! regex type ([`SysRegex`]) one character at a time, so they follow its Unicode tables.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use tokenizers::utils::SysRegex;

use crate::{Error, Result};

/// The class of a character for the GPT-2 regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Class {
    /// `\p{L}`.
    Letter = 1,
    /// `\p{N}`.
    Number = 2,
    /// `\s` (Unicode `White_Space`).
    Space = 3,
    /// Anything else: `[^\s\p{L}\p{N}]`.
    Other = 4,
}

impl Class {
    fn from_code(code: u8) -> Option<Class> {
        match code {
            1 => Some(Class::Letter),
            2 => Some(Class::Number),
            3 => Some(Class::Space),
            4 => Some(Class::Other),
            _ => None,
        }
    }
}

/// Number of Unicode scalar values' slots (code points up to U+10FFFF).
const CODE_POINTS: usize = 0x11_0000;

/// Classes of characters, asked of the `tokenizers` regex engine once per character and kept
/// in a table shared by all threads.
pub(super) struct Classifier {
    ascii: [Class; 128],
    /// 0 = not asked yet, otherwise a [`Class`] code; indexed by code point.
    table: Box<[AtomicU8]>,
    letter: SysRegex,
    number: SysRegex,
    space: SysRegex,
}

static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();

impl Classifier {
    /// The process-wide classifier, built on first use.
    pub(super) fn global() -> Result<&'static Classifier> {
        if let Some(c) = CLASSIFIER.get() {
            return Ok(c);
        }
        let built = Classifier::new()?;
        Ok(CLASSIFIER.get_or_init(|| built))
    }

    fn new() -> Result<Self> {
        let regex = |pattern: &str| SysRegex::new(pattern).map_err(|e| Error::Tokenizer(format!("cannot build the regex {pattern}: {e}")));
        let mut classifier = Classifier {
            ascii: [Class::Other; 128],
            table: (0..CODE_POINTS).map(|_| AtomicU8::new(0)).collect(),
            letter: regex(r"\p{L}")?,
            number: regex(r"\p{N}")?,
            space: regex(r"\s")?,
        };
        for b in 0..128u8 {
            classifier.ascii[usize::from(b)] = classifier.probe(char::from(b));
        }
        Ok(classifier)
    }

    /// Asks the regex engine which class `c` is in.
    fn probe(&self, c: char) -> Class {
        let mut buf = [0u8; 4];
        let s = c.encode_utf8(&mut buf);
        let whole = |re: &SysRegex| re.find_iter(s).next() == Some((0, s.len()));
        if whole(&self.letter) {
            Class::Letter
        } else if whole(&self.number) {
            Class::Number
        } else if whole(&self.space) {
            Class::Space
        } else {
            Class::Other
        }
    }

    /// The class of `c`.
    pub(super) fn class(&self, c: char) -> Class {
        let code = c as usize;
        if code < 128 {
            return self.ascii[code];
        }
        let slot = &self.table[code];
        if let Some(class) = Class::from_code(slot.load(Ordering::Relaxed)) {
            return class;
        }
        let class = self.probe(c);
        slot.store(class as u8, Ordering::Relaxed);
        class
    }

    /// The class and byte length of the character starting at byte `i` of `text` (a char
    /// boundary).
    #[inline]
    fn class_at(&self, text: &str, i: usize) -> (Class, usize) {
        let b = text.as_bytes()[i];
        if b < 128 {
            return (self.ascii[usize::from(b)], 1);
        }
        match text[i..].chars().next() {
            Some(c) => (self.class(c), c.len_utf8()),
            None => (Class::Other, 1),
        }
    }

    /// End of the run of characters of class `class` that starts at byte `i`.
    #[inline]
    fn run_end(&self, text: &str, mut i: usize, class: Class) -> usize {
        let bytes = text.as_bytes();
        while i < bytes.len() {
            let b = bytes[i];
            if b < 128 {
                if self.ascii[usize::from(b)] != class {
                    break;
                }
                i += 1;
            } else {
                let (k, len) = self.class_at(text, i);
                if k != class {
                    break;
                }
                i += len;
            }
        }
        i
    }

    /// End of the piece that starts at byte `i < text.len()`.
    #[inline]
    fn piece_end(&self, text: &str, i: usize) -> usize {
        let bytes = text.as_bytes();
        let (class, len) = self.class_at(text, i);
        match class {
            Class::Other if bytes[i] == b'\'' => match contraction_len(&bytes[i + 1..]) {
                Some(n) => i + 1 + n,
                None => self.run_end(text, i, Class::Other),
            },
            Class::Space => {
                // ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+` take one leading U+0020.
                if bytes[i] == b' ' && i + 1 < bytes.len() {
                    let (next, _) = self.class_at(text, i + 1);
                    if next != Class::Space {
                        return self.run_end(text, i + 1, next);
                    }
                }
                let end = self.run_end(text, i + len, Class::Space);
                if end == bytes.len() {
                    // `\s+(?!\S)` takes a run that ends the text.
                    return end;
                }
                // Followed by a non-space: `\s+(?!\S)` backs off one character, which then
                // starts the next piece; a single character is taken by the final `\s+`.
                let last = last_char_start(bytes, end);
                if last > i {
                    last
                } else {
                    end
                }
            }
            _ => self.run_end(text, i + len, class),
        }
    }
}

/// Length after the apostrophe of a contraction `'s 't 're 've 'm 'll 'd` starting `rest`.
#[inline]
fn contraction_len(rest: &[u8]) -> Option<usize> {
    match rest {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

/// Start of the character that ends just before byte `end` (`end > 0`, a char boundary).
#[inline]
fn last_char_start(bytes: &[u8], end: usize) -> usize {
    let mut i = end - 1;
    while i > 0 && bytes[i] & 0xC0 == 0x80 {
        i -= 1;
    }
    i
}

/// The pieces of `text` (substrings, in order, covering it) the GPT-2 regex splits it into.
pub(super) struct Pieces<'t> {
    text: &'t str,
    pos: usize,
    classifier: &'static Classifier,
}

impl<'t> Pieces<'t> {
    pub(super) fn new(text: &'t str, classifier: &'static Classifier) -> Self {
        Pieces { text, pos: 0, classifier }
    }
}

impl<'t> Iterator for Pieces<'t> {
    type Item = &'t str;

    #[inline]
    fn next(&mut self) -> Option<&'t str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        self.pos = self.classifier.piece_end(self.text, start);
        self.text.get(start..self.pos)
    }
}

/// Where a text may be cut so that encoding the two parts apart gives the ids of the whole.
///
/// A cut at byte `p` is taken between a non-space character and a space character (`\s`):
/// no GPT-2 piece runs from a non-space into a space, the piece that ends at `p` is decided
/// the same way by the space that follows as by the end of the text, and every piece after
/// `p` is decided by what follows it only. The rule is narrowed when:
/// * `space_only`: the pre-tokenizer adds a prefix space to a text that does not start with
///   U+0020, so the space character must be U+0020 (the right part then gets no prefix);
/// * `ascii_only`: a normalizer runs first, so the cut is only taken between an ASCII letter
///   or digit and an ASCII space, tab, CR or LF, which the known normalizers (NFC/NFD/NFKC/
///   NFKD, lowercase, punctuation removal) keep as they are and never combine across.
#[derive(Debug, Clone, Copy)]
pub(super) struct SplitRule {
    pub(super) space_only: bool,
    pub(super) ascii_only: bool,
}

impl SplitRule {
    /// Whether a cut at byte `p` (a char boundary, `0 < p < text.len()`) is safe.
    fn is_safe(&self, classifier: &Classifier, text: &str, p: usize) -> bool {
        let bytes = text.as_bytes();
        let next = bytes[p];
        if self.ascii_only {
            let space = if self.space_only { next == b' ' } else { matches!(next, b' ' | b'\t' | b'\n' | b'\r') };
            return space && bytes[p - 1].is_ascii_alphanumeric();
        }
        let space = if self.space_only { next == b' ' } else { classifier.class_at(text, p).0 == Class::Space };
        space && text[..p].chars().next_back().is_some_and(|c| classifier.class(c) != Class::Space)
    }

    /// The first safe cut at or after byte `near`, if any.
    pub(super) fn find(&self, classifier: &Classifier, text: &str, near: usize) -> Option<usize> {
        (near.max(1)..text.len()).find(|&p| text.is_char_boundary(p) && self.is_safe(classifier, text, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    /// Byte ranges of the pieces `tokenizers` makes of `text`.
    fn reference(text: &str) -> Vec<(usize, usize)> {
        let mut pre = PreTokenizedString::from(text);
        ByteLevel::new(false, true, true).pre_tokenize(&mut pre).unwrap();
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(_, offsets, _)| offsets).collect()
    }

    fn ours(text: &str) -> Vec<(usize, usize)> {
        let classifier = Classifier::global().unwrap();
        let mut start = 0;
        Pieces::new(text, classifier)
            .map(|piece| {
                let range = (start, start + piece.len());
                start += piece.len();
                range
            })
            .collect()
    }

    #[test]
    fn pieces_match_the_regex_on_tricky_strings() {
        let cases = [
            "",
            " ",
            "hello world",
            "  two  spaces  ",
            "\n\n  \n",
            "a \nb",
            "a\n b",
            "x\t\ty",
            "tab\t end\t",
            "I'm can't we're they've he'll she'd it's 'S 'x '' ''s",
            "!'s x'll .'re",
            "números ١٢٣ ½ Ⅻ 42x",
            "emoji 😀😀 ok👍🏽!",
            "中文字符 和 日本語",
            "<pad><eos> <unk>",
            "\u{a0}nbsp\u{3000}ideo\u{2028}sep\u{85}nel",
            "trailing   ",
            "   leading",
            "é\u{301} combining",
        ];
        for text in cases {
            assert_eq!(ours(text), reference(text), "pieces of {text:?}");
        }
    }

    #[test]
    fn classes_of_known_characters() {
        let c = Classifier::global().unwrap();
        assert_eq!(c.class('a'), Class::Letter);
        assert_eq!(c.class('é'), Class::Letter);
        assert_eq!(c.class('7'), Class::Number);
        assert_eq!(c.class('½'), Class::Number);
        assert_eq!(c.class('\n'), Class::Space);
        assert_eq!(c.class('\u{3000}'), Class::Space);
        assert_eq!(c.class('\''), Class::Other);
        assert_eq!(c.class('😀'), Class::Other);
    }

    proptest::proptest! {
        #[test]
        fn pieces_match_the_regex(text in "[a-c1 '\\n\\tsdrlvemé٣😀\u{a0}.!]{0,40}") {
            proptest::prop_assert_eq!(ours(&text), reference(&text));
        }

        #[test]
        fn pieces_match_the_regex_any(text in proptest::prelude::any::<String>()) {
            proptest::prop_assert_eq!(ours(&text), reference(&text));
        }
    }
}
