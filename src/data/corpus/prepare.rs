//! `convlm prepare`: a corpus of any size (a file, a folder, or the built-in word list) into a
//! prepared-corpus folder (`folder.rs`), tokenized once, in blocks, with memory bounded
//! by the block size rather than the corpus. The tokenizer is given, or made first from a
//! streaming pass over the same blocks (a character alphabet, or BPE trained from an iterator
//! over the lines — never one giant string).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::dataset::DatasetKind;
use super::documents::{LineEncoder, LineRules, TokenSink};
use super::folder::{CorpusMeta, CorpusWriter, Dtype};
use super::names::CORPUS_TOKENIZER;
use super::reader::{read_blocks, Block};
use super::source::{list_sources, SourceFile, SourceFingerprint, SourceOptions};
use crate::data::tokenize::{BpeTokenizer, CharTokenizer, Encoder, Normalization, Tokenizer, UnknownPolicy};
use crate::{Error, Result};

/// Which tokenizer a corpus is encoded with.
#[derive(Debug, Clone)]
pub enum TokenizerSpec {
    /// One id per character of the corpus.
    Char,
    /// Byte-level BPE trained on the corpus.
    Bpe { vocab_size: usize },
    /// This one, as it is.
    Given(Tokenizer),
}

/// How to prepare a corpus.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub kind: DatasetKind,
    pub tokenizer: TokenizerSpec,
    /// Normalization of a tokenizer made here.
    pub normalization: Normalization,
    /// Unknown characters of a character tokenizer made here.
    pub unknown: UnknownPolicy,
    /// What line data keeps.
    pub rules: LineRules,
    pub source: SourceOptions,
}

/// Progress of a prepare, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrepareProgress {
    /// `"tokenizer"` (making the tokenizer) or `"encoding"`.
    pub phase: &'static str,
    /// Bytes of the corpus read in this phase, and in all.
    pub bytes: u64,
    pub total_bytes: u64,
    /// Ids written so far.
    pub tokens: u64,
}

/// Where the text comes from.
pub enum Source<'a> {
    /// A file, or a folder read recursively.
    Path(&'a Path),
    /// Text in memory (the built-in word list), with the name its fingerprint carries.
    Text { name: &'a str, text: &'a str },
}

/// Reads the source in blocks (see [`read_blocks`]); in-memory text is one block.
fn blocks(
    source: &Source,
    files: &[SourceFile],
    opts: &SourceOptions,
    mut each: impl FnMut(Block) -> Result<()>,
    mut on_bytes: impl FnMut(u64),
) -> Result<SourceFingerprint> {
    match source {
        Source::Path(_) => Ok(SourceFingerprint { files: read_blocks(files, opts, each, on_bytes)? }),
        Source::Text { name, text } => {
            each(Block { file: 0, first_line: 1, text: text.to_string(), last_of_file: true })?;
            on_bytes(text.len() as u64);
            Ok(SourceFingerprint::of_text(name, text))
        }
    }
}

/// Feeds a stream's text through `emit` in pieces cut where the tokenizer allows, so that the
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

/// Runs the encoding pass: every block through `encoder` into `sink`, stream text joined as
/// `read_corpus` joins files (a newline after a file of a folder that lacks one).
fn encode_pass(
    source: &Source,
    files: &[SourceFile],
    opts: &PrepareOptions,
    encoder: &Encoder,
    sink: &mut dyn TokenSink,
    on_bytes: impl FnMut(u64),
) -> Result<(SourceFingerprint, usize)> {
    let folder = matches!(source, Source::Path(p) if p.is_dir());
    let mut lines = LineEncoder::new(encoder, opts.kind, opts.rules);
    let mut cutter = StreamCutter { encoder, carry: String::new() };
    let mut text_files = 0;
    let mut file_has_text = false;
    let fingerprint = blocks(
        source,
        files,
        &opts.source,
        |block| {
            file_has_text |= !block.text.trim().is_empty();
            let where_ = files.get(block.file).map(|f| f.path.display().to_string()).unwrap_or_default();
            match opts.kind {
                DatasetKind::Stream => {
                    // An empty file of a folder adds nothing (not even a newline).
                    if file_has_text {
                        cutter.push(&block.text, sink)?;
                        if block.last_of_file && folder && !block.text.ends_with('\n') && !block.text.is_empty() {
                            cutter.push("\n", sink)?;
                        }
                    }
                }
                _ => {
                    lines.encode(&block.text, block.first_line, &where_, sink)?;
                }
            }
            if block.last_of_file {
                text_files += usize::from(file_has_text);
                file_has_text = false;
            }
            Ok(())
        },
        on_bytes,
    )?;
    cutter.finish(sink)?;
    Ok((fingerprint, text_files))
}

/// The tokenizer `opts` asks for: given, or made from a streaming pass over the source.
fn make_tokenizer(source: &Source, files: &[SourceFile], opts: &PrepareOptions, on_bytes: impl FnMut(u64) + Send) -> Result<Tokenizer> {
    match &opts.tokenizer {
        TokenizerSpec::Given(t) => Ok(t.clone()),
        TokenizerSpec::Char => {
            // The alphabet: every character of the normalized lines (line data never encodes
            // a line break), or of the whole normalized text (a stream).
            let mut chars = BTreeSet::new();
            let mut ascii = [false; 128];
            blocks(
                source,
                files,
                &opts.source,
                |block| {
                    let mut add = |text: &str| {
                        let text = opts.normalization.apply_cow(text);
                        for &b in text.as_bytes().iter().filter(|b| b.is_ascii()) {
                            ascii[b as usize] = true;
                        }
                        if !text.is_ascii() {
                            chars.extend(text.chars().filter(|c| !c.is_ascii()));
                        }
                    };
                    match opts.kind {
                        DatasetKind::Stream => add(&block.text),
                        _ => block.text.lines().for_each(&mut add),
                    }
                    Ok(())
                },
                on_bytes,
            )?;
            chars.extend((0u8..128).filter(|&b| ascii[b as usize]).map(char::from));
            Ok(Tokenizer::Char(CharTokenizer::from_alphabet(chars, opts.normalization, opts.unknown)))
        }
        TokenizerSpec::Bpe { vocab_size } => {
            // Trained from the lines as a reader thread hands over blocks (two in flight at
            // most): the trainer keeps word counts, so the corpus is never in memory whole.
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
                let reader = scope.spawn(move || {
                    blocks(source, files, &opts.source, |block| tx.send(block.text).map_err(|_| Error::Data("BPE training stopped reading".into())), on_bytes)
                });
                let lines = rx.into_iter().flat_map(|block| block.split_inclusive('\n').map(str::to_string).collect::<Vec<_>>());
                let trained = BpeTokenizer::train_from_lines(lines, *vocab_size, opts.normalization);
                // A read error ends the lines early: it is the error to report.
                reader.join().map_err(|_| Error::Data("the corpus reader failed".into()))??;
                Ok(Tokenizer::Bpe(trained?))
            })
        }
    }
}

/// Prepares `source` into the corpus folder `out` (see the module and `folder.rs`).
/// Errors name the file at fault; an empty corpus is an error. `on_progress` hears how far
/// each phase got.
pub fn prepare(source: &Source, opts: &PrepareOptions, out: &Path, on_progress: impl Fn(&PrepareProgress) + Sync) -> Result<CorpusMeta> {
    let files = match source {
        Source::Path(p) => list_sources(p, &opts.source)?,
        Source::Text { .. } => Vec::new(),
    };
    if let Source::Path(p) = source {
        if files.is_empty() {
            return Err(Error::bad_file(p, "the corpus folder has no regular files"));
        }
    }
    let total_bytes = match source {
        Source::Path(_) => files.iter().filter_map(|f| std::fs::metadata(&f.path).ok()).map(|m| m.len()).sum(),
        Source::Text { text, .. } => text.len() as u64,
    };
    let (bytes, tokens) = (AtomicU64::new(0), AtomicU64::new(0));
    let report = |phase: &'static str, n: u64| {
        let bytes = bytes.fetch_add(n, Ordering::Relaxed) + n;
        on_progress(&PrepareProgress { phase, bytes, total_bytes, tokens: tokens.load(Ordering::Relaxed) });
    };
    let tokenizer = make_tokenizer(source, &files, opts, |n| report("tokenizer", n))?;
    bytes.store(0, Ordering::Relaxed);
    let vocab_size = tokenizer.vocab_size();
    let dtype = Dtype::for_vocab(vocab_size);
    let mut writer = CorpusWriter::create(out, dtype, opts.kind != DatasetKind::Stream)?;
    let encoder = Encoder::new(&tokenizer)?;
    let mut counted = CountingSink { inner: &mut writer, tokens: &tokens };
    let (fingerprint, text_files) = encode_pass(source, &files, opts, &encoder, &mut counted, |n| report("encoding", n))?;
    if text_files == 0 || writer.tokens() == 0 {
        let path = match source {
            Source::Path(p) => p.to_path_buf(),
            Source::Text { name, .. } => name.into(),
        };
        return Err(match files.len() {
            0 | 1 => Error::bad_file(path, "the corpus file is empty (no text)"),
            n => Error::bad_file(path, format!("all {n} files of the corpus folder are empty (no text)")),
        });
    }
    tokenizer.save(&out.join(CORPUS_TOKENIZER))?;
    let meta = CorpusMeta {
        format: "convlm-corpus".into(),
        version: 1,
        kind: opts.kind,
        dtype,
        tokens: writer.tokens(),
        documents: writer.documents(),
        vocab_size,
        tokenizer_xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(tokenizer.to_json()?.as_bytes())),
        source: fingerprint,
        dedupe: opts.rules.dedupe,
        max_line_len: opts.rules.max_line_len,
    };
    writer.finish(&meta)?;
    Ok(meta)
}

/// Counts the ids passing to a sink.
struct CountingSink<'a> {
    inner: &'a mut dyn TokenSink,
    tokens: &'a AtomicU64,
}

impl TokenSink for CountingSink<'_> {
    fn push(&mut self, ids: &[u32]) -> Result<()> {
        self.tokens.fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.inner.push(ids)
    }

    fn end_doc(&mut self) -> Result<()> {
        self.inner.end_doc()
    }
}
