//! A corpus's text into the ids of its documents, the one way every corpus is cut — a whole
//! file prepared into a corpus folder (`prepare`) or a string made into a dataset in memory
//! (`Dataset::lines` and friends): lines encoded in parallel, checked, deduplicated and
//! appended as documents into a [`TokenSink`] (a corpus file, or memory); for `prepare`, the
//! blocks read from a corpus's files, line data or one stream ([`BlockEncoder`]).

use std::collections::HashSet;

use rayon::prelude::*;

use super::dataset::DatasetKind;
use super::reader::Block;
use super::store::{ids_hash, TokenStore};
use crate::data::tokenize::Encoder;
use crate::{Error, Result};

/// Where encoded ids go: a corpus file, or memory.
pub trait TokenSink {
    /// Appends ids (to the current document, for line data).
    fn push(&mut self, ids: &[u32]) -> Result<()>;
    /// Ends the current document (line data).
    fn end_doc(&mut self) -> Result<()>;
}

/// Ids and line boundaries in memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    ids: Vec<u32>,
    /// Boundaries after the first (0), one per ended document.
    ends: Vec<u64>,
}

impl TokenSink for MemorySink {
    fn push(&mut self, ids: &[u32]) -> Result<()> {
        self.ids.extend_from_slice(ids);
        Ok(())
    }

    fn end_doc(&mut self) -> Result<()> {
        self.ends.push(self.ids.len() as u64);
        Ok(())
    }
}

impl MemorySink {
    /// The store of what was pushed; with documents when `docs`.
    pub fn into_store(self, docs: bool) -> TokenStore {
        let offsets = docs.then(|| std::iter::once(0).chain(self.ends).collect());
        TokenStore::owned(self.ids, offsets)
    }
}

/// What line data keeps of each line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRules {
    /// Drop a line whose ids equal an earlier line's.
    pub dedupe: bool,
    /// Longest line in tokens; a longer one is an error naming it.
    pub max_line_len: usize,
}

/// Adds "line N: " to a tokenizer error.
fn at_line(line: usize, e: Error) -> Error {
    match e {
        Error::Tokenizer(msg) => Error::Tokenizer(format!("line {line}: {msg}")),
        other => other,
    }
}

/// Line data, a block of whole lines (LF or CRLF ends) at a time: for `Lines`, every
/// non-blank line that encodes to at least one id becomes a document (later duplicates
/// dropped with `rules.dedupe`); for `Grid`, every line does, blank ones included (they
/// become empty rows).
pub struct LineEncoder<'a> {
    encoder: &'a Encoder<'a>,
    kind: DatasetKind,
    rules: LineRules,
    /// Hashes of the lines kept so far (deduplication).
    seen: HashSet<u64>,
}

impl<'a> LineEncoder<'a> {
    pub fn new(encoder: &'a Encoder<'a>, kind: DatasetKind, rules: LineRules) -> Self {
        LineEncoder { encoder, kind, rules, seen: HashSet::new() }
    }

    /// Encodes `text`, whose first line is line `first_line` of its source, into `sink`;
    /// `where_` names the source in errors (`""` for none). Returns the number of lines read.
    pub fn encode(&mut self, text: &str, first_line: usize, where_: &str, sink: &mut dyn TokenSink) -> Result<usize> {
        let kind = self.kind;
        let lines: Vec<&str> = text.lines().collect();
        let encoded: Vec<Result<Option<Vec<u32>>>> = lines
            .par_iter()
            .enumerate()
            .map(|(i, line)| {
                if kind == DatasetKind::Lines && line.trim().is_empty() {
                    return Ok(None);
                }
                self.encoder.encode(line).map(Some).map_err(|e| at_line(first_line + i, e))
            })
            .collect();
        for (i, ids) in encoded.into_iter().enumerate() {
            let Some(ids) = ids.map_err(|e| in_source(where_, e))? else { continue };
            if kind == DatasetKind::Lines {
                if ids.len() > self.rules.max_line_len {
                    let msg = format!("line {} has {} tokens, more than max_line_len = {}", first_line + i, ids.len(), self.rules.max_line_len);
                    return Err(in_source(where_, Error::Data(msg)));
                }
                if ids.is_empty() || (self.rules.dedupe && !self.seen.insert(ids_hash(&ids))) {
                    continue;
                }
            }
            sink.push(&ids)?;
            sink.end_doc()?;
        }
        Ok(lines.len())
    }
}

/// Puts the source's name in front of a data or tokenizer error.
fn in_source(where_: &str, e: Error) -> Error {
    if where_.is_empty() {
        return e;
    }
    match e {
        Error::Data(msg) => Error::Data(format!("{where_}: {msg}")),
        Error::Tokenizer(msg) => Error::Tokenizer(format!("{where_}: {msg}")),
        other => other,
    }
}

/// Feeds a stream's text to the encoder in pieces cut where the tokenizer allows, so that the
/// ids equal those of the whole text: text is held back until a safe cut is known.
struct StreamCutter<'e> {
    encoder: &'e Encoder<'e>,
    carry: String,
}

impl StreamCutter<'_> {
    /// Adds text; encodes what can be cut off.
    fn push(&mut self, text: &str, sink: &mut dyn TokenSink) -> Result<()> {
        self.carry.push_str(text);
        if self.carry.len() < 1 << 20 {
            return Ok(());
        }
        let near = self.carry.len() - self.carry.len() / 4;
        if let Some(cut) = self.encoder.split_point(&self.carry, near).filter(|&c| c < self.carry.len()) {
            let rest = self.carry.split_off(cut);
            sink.push(&self.encoder.encode_stream(&self.carry)?)?;
            self.carry = rest;
        }
        Ok(())
    }

    /// Encodes the rest.
    fn finish(self, sink: &mut dyn TokenSink) -> Result<()> {
        sink.push(&self.encoder.encode_stream(&self.carry)?)
    }
}

/// The blocks of a corpus read from its sources ([`Block`]s) into the ids of its documents:
/// line data through a [`LineEncoder`]; stream text joined as `read_corpus` joins files (a
/// file with no text adds nothing, a file of a folder that lacks a final newline gets one)
/// and encoded in pieces that give the ids of the whole text.
pub(crate) struct BlockEncoder<'a> {
    kind: DatasetKind,
    lines: LineEncoder<'a>,
    stream: StreamCutter<'a>,
    /// Whether the source is a folder.
    folder: bool,
    /// Whether the current file has shown text yet.
    file_has_text: bool,
    /// Files with text so far.
    text_files: usize,
}

impl<'a> BlockEncoder<'a> {
    pub(crate) fn new(encoder: &'a Encoder<'a>, kind: DatasetKind, rules: LineRules, folder: bool) -> Self {
        let lines = LineEncoder::new(encoder, kind, rules);
        BlockEncoder { kind, lines, stream: StreamCutter { encoder, carry: String::new() }, folder, file_has_text: false, text_files: 0 }
    }

    /// Encodes `block` into `sink` (a stream may hold its end back until the next block);
    /// `where_` names its file in errors.
    pub(crate) fn push(&mut self, block: &Block, where_: &str, sink: &mut dyn TokenSink) -> Result<()> {
        self.file_has_text |= !block.text.trim().is_empty();
        match self.kind {
            DatasetKind::Stream => {
                // An empty file of a folder adds nothing (not even a newline).
                if self.file_has_text {
                    self.stream.push(&block.text, sink)?;
                    if block.last_of_file && self.folder && !block.text.ends_with('\n') && !block.text.is_empty() {
                        self.stream.push("\n", sink)?;
                    }
                }
            }
            _ => {
                self.lines.encode(&block.text, block.first_line, where_, sink)?;
            }
        }
        if block.last_of_file {
            self.text_files += usize::from(self.file_has_text);
            self.file_has_text = false;
        }
        Ok(())
    }

    /// Encodes what the stream held back; returns the number of files that had text.
    pub(crate) fn finish(self, sink: &mut dyn TokenSink) -> Result<usize> {
        self.stream.finish(sink)?;
        Ok(self.text_files)
    }
}
