//! `convlm prepare`: a corpus of any size (a file, a folder, or the built-in word list) into a
//! prepared-corpus folder (`folder.rs`), tokenized once, in blocks, with memory bounded by the
//! block size rather than the corpus. One pass: sources (`source.rs`) → blocks of whole lines
//! (`reader.rs`) → ids (`documents.rs`, with the tokenize room's `Encoder`) → files
//! (`folder.rs`). The tokenizer is given, or made first from a streaming pass over the same
//! blocks (a character alphabet, or BPE trained from an iterator over the lines — never one
//! giant string).

use std::collections::BTreeSet;
use std::path::Path;

use super::dataset::DatasetKind;
use super::documents::{BlockEncoder, LineRules};
use super::folder::{CorpusMeta, CorpusWriter, Dtype};
use super::names::CORPUS_TOKENIZER;
use super::reader::Blocks;
use super::source::{list_sources, SourceFile, SourceOptions};
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

impl Source<'_> {
    /// The files to read (none for text in memory); a folder without any is an error.
    fn files(&self, opts: &SourceOptions) -> Result<Vec<SourceFile>> {
        let Source::Path(path) = self else { return Ok(Vec::new()) };
        let files = list_sources(path, opts)?;
        if files.is_empty() {
            return Err(Error::bad_file(path, "the corpus folder has no regular files"));
        }
        Ok(files)
    }

    /// The text's blocks, read from `files` (those of [`Source::files`]) or memory.
    fn blocks<'a>(&'a self, files: &'a [SourceFile], opts: &SourceOptions) -> Blocks<'a> {
        match self {
            Source::Path(_) => Blocks::files(files, opts),
            Source::Text { name, text } => Blocks::text(name, text),
        }
    }
}

/// Prepares `source` into the corpus folder `out` (see the module and `folder.rs`).
/// Errors name the file at fault; an empty corpus is an error. `on_progress` hears how far
/// each phase got.
pub fn prepare(source: &Source, opts: &PrepareOptions, out: &Path, on_progress: impl Fn(&PrepareProgress) + Sync) -> Result<CorpusMeta> {
    // Sources: the files to read, and their size for the progress.
    let files = source.files(&opts.source)?;
    let total_bytes = match source {
        Source::Path(_) => files.iter().filter_map(|f| std::fs::metadata(&f.path).ok()).map(|m| m.len()).sum(),
        Source::Text { text, .. } => text.len() as u64,
    };
    let progress = |phase, bytes, tokens| on_progress(&PrepareProgress { phase, bytes, total_bytes, tokens });
    let mut tokenizer_bytes = 0;
    let tokenizer = make_tokenizer(source, &files, opts, |n| {
        tokenizer_bytes += n;
        progress("tokenizer", tokenizer_bytes, 0);
    })?;

    // Blocks → ids → files.
    let vocab_size = tokenizer.vocab_size();
    let dtype = Dtype::for_vocab(vocab_size);
    let mut writer = CorpusWriter::create(out, dtype, opts.kind != DatasetKind::Stream)?;
    let encoder = Encoder::new(&tokenizer)?;
    let folder = matches!(source, Source::Path(p) if p.is_dir());
    let mut ids = BlockEncoder::new(&encoder, opts.kind, opts.rules, folder);
    let mut blocks = source.blocks(&files, &opts.source);
    let mut bytes = 0;
    for block in blocks.by_ref() {
        let block = block?;
        let where_ = files.get(block.file).map(|f| f.path.display().to_string()).unwrap_or_default();
        ids.push(&block, &where_, &mut writer)?;
        bytes += block.bytes_read;
        progress("encoding", bytes, writer.tokens());
    }
    let text_files = ids.finish(&mut writer)?;
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
        source: blocks.fingerprint(),
        dedupe: opts.rules.dedupe,
        max_line_len: opts.rules.max_line_len,
    };
    writer.finish(&meta)?;
    Ok(meta)
}

/// The tokenizer `opts` asks for: given, or made from a streaming pass over the source's
/// blocks; `on_bytes` hears the raw bytes of each block read.
fn make_tokenizer(source: &Source, files: &[SourceFile], opts: &PrepareOptions, mut on_bytes: impl FnMut(u64) + Send) -> Result<Tokenizer> {
    match &opts.tokenizer {
        TokenizerSpec::Given(t) => Ok(t.clone()),
        TokenizerSpec::Char => {
            // The alphabet: every character of the normalized lines (line data never encodes
            // a line break), or of the whole normalized text (a stream).
            let mut chars = BTreeSet::new();
            let mut ascii = [false; 128];
            let mut add = |text: &str| {
                let text = opts.normalization.apply_cow(text);
                for &b in text.as_bytes().iter().filter(|b| b.is_ascii()) {
                    ascii[b as usize] = true;
                }
                if !text.is_ascii() {
                    chars.extend(text.chars().filter(|c| !c.is_ascii()));
                }
            };
            for block in source.blocks(files, &opts.source) {
                let block = block?;
                match opts.kind {
                    DatasetKind::Stream => add(&block.text),
                    _ => block.text.lines().for_each(&mut add),
                }
                on_bytes(block.bytes_read);
            }
            chars.extend((0u8..128).filter(|&b| ascii[b as usize]).map(char::from));
            Ok(Tokenizer::Char(CharTokenizer::from_alphabet(chars, opts.normalization, opts.unknown)))
        }
        TokenizerSpec::Bpe { vocab_size } => {
            // Trained from the lines as a reader thread hands over blocks (two in flight at
            // most): the trainer keeps word counts, so the corpus is never in memory whole.
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
                let reader = scope.spawn(move || -> Result<()> {
                    for block in source.blocks(files, &opts.source) {
                        let block = block?;
                        on_bytes(block.bytes_read);
                        tx.send(block.text).map_err(|_| Error::Data("BPE training stopped reading".into()))?;
                    }
                    Ok(())
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
