//! The prepared-corpus folder (`convlm prepare`, docs/corpus-format.md):
//!
//! - `tokens.bin`: every token id, little-endian `u16` (when the vocabulary fits) or `u32`;
//! - `docs.bin` (line and grid data): `n + 1` little-endian `u64` offsets into the ids, the
//!   boundaries of the `n` lines;
//! - `tokenizer.json`: the tokenizer that made the ids;
//! - `corpus.json` ([`CorpusMeta`]): counts, dtype, kind, the source's fingerprint, the
//!   tokenizer's hash and the format version. It is written last: a folder without it (an
//!   interrupted prepare) is not a corpus.
//!
//! [`CorpusWriter`] writes the ids as they come, so memory does not grow with the corpus;
//! [`open_corpus`] opens the ids (read where asked) and maps the line offsets, and checks
//! their sizes against `corpus.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::DatasetKind;
use super::documents::TokenSink;
use super::names::{corpus_state, partial_name, CorpusState, CORPUS_META, DOCS_FILE, TOKENS_FILE};
use super::source::SourceFingerprint;
use super::store::TokenStore;
use crate::io::{read_json, write_json};
use crate::{Error, Result};

const FORMAT: &str = "convlm-corpus";
const VERSION: u32 = 1;

/// Width of the stored ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    U16,
    U32,
}

impl Dtype {
    /// The narrowest dtype for ids below `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Dtype {
        if vocab_size <= 1 << 16 {
            Dtype::U16
        } else {
            Dtype::U32
        }
    }

    /// Bytes per id.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::U16 => 2,
            Dtype::U32 => 4,
        }
    }
}

/// `corpus.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusMeta {
    /// Always `convlm-corpus`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// How the text was cut: `lines` (a document per non-blank line), `grid` (every line,
    /// blank ones included) or `stream` (one sequence, no documents).
    pub kind: DatasetKind,
    pub dtype: Dtype,
    /// Number of token ids in `tokens.bin`.
    pub tokens: u64,
    /// Number of documents (lines) in `docs.bin`; 0 for a stream.
    pub documents: u64,
    /// Ids are below this.
    pub vocab_size: usize,
    /// XXH3-64 of `tokenizer.json`, hex.
    pub tokenizer_xxh3: String,
    /// The files the corpus was made from.
    pub source: SourceFingerprint,
    /// Duplicate lines dropped (line data).
    pub dedupe: bool,
    /// Longest line allowed, in tokens (line data).
    pub max_line_len: usize,
}

/// Writes the files of a prepared corpus into a folder as ids arrive.
pub struct CorpusWriter {
    dir: PathBuf,
    dtype: Dtype,
    tokens: BufWriter<File>,
    docs: Option<BufWriter<File>>,
    count: u64,
    doc_count: u64,
}

/// `name` inside `dir`, while it is being written.
fn partial(dir: &Path, name: &str) -> PathBuf {
    dir.join(partial_name(name))
}

impl CorpusWriter {
    /// Starts a corpus in `dir` (created if needed; an existing corpus there stops counting
    /// as one until [`CorpusWriter::finish`]). `with_docs`: line boundaries are recorded.
    pub fn create(dir: &Path, dtype: Dtype, with_docs: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let meta = dir.join(CORPUS_META);
        if meta.exists() {
            std::fs::remove_file(&meta).map_err(|e| Error::io(&meta, e))?;
        }
        let open = |name: &str| -> Result<BufWriter<File>> {
            let p = partial(dir, name);
            Ok(BufWriter::with_capacity(1 << 20, File::create(&p).map_err(|e| Error::io(&p, e))?))
        };
        let mut docs = if with_docs { Some(open(DOCS_FILE)?) } else { None };
        if let Some(d) = &mut docs {
            d.write_all(&0u64.to_le_bytes()).map_err(|e| Error::io(partial(dir, DOCS_FILE), e))?;
        }
        Ok(CorpusWriter { dir: dir.to_path_buf(), dtype, tokens: open(TOKENS_FILE)?, docs, count: 0, doc_count: 0 })
    }
}

impl TokenSink for CorpusWriter {
    fn push(&mut self, ids: &[u32]) -> Result<()> {
        let mut bytes = Vec::with_capacity(ids.len() * self.dtype.bytes());
        match self.dtype {
            Dtype::U16 => ids.iter().for_each(|&id| bytes.extend_from_slice(&(id as u16).to_le_bytes())),
            Dtype::U32 => ids.iter().for_each(|&id| bytes.extend_from_slice(&id.to_le_bytes())),
        }
        self.tokens.write_all(&bytes).map_err(|e| Error::io(partial(&self.dir, TOKENS_FILE), e))?;
        self.count += ids.len() as u64;
        Ok(())
    }

    fn end_doc(&mut self) -> Result<()> {
        if let Some(d) = &mut self.docs {
            d.write_all(&self.count.to_le_bytes()).map_err(|e| Error::io(partial(&self.dir, DOCS_FILE), e))?;
            self.doc_count += 1;
        }
        Ok(())
    }
}

impl CorpusWriter {
    /// Ids written so far.
    pub fn tokens(&self) -> u64 {
        self.count
    }

    /// Documents ended so far.
    pub fn documents(&self) -> u64 {
        self.doc_count
    }

    /// Flushes and syncs the files, renames them into place, and writes `corpus.json` last.
    pub fn finish(self, meta: &CorpusMeta) -> Result<()> {
        let CorpusWriter { dir, tokens, docs, .. } = self;
        for (name, writer) in [(TOKENS_FILE, Some(tokens)), (DOCS_FILE, docs)] {
            let Some(writer) = writer else { continue };
            let p = partial(&dir, name);
            let file = writer.into_inner().map_err(|e| Error::io(&p, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&p, e))?;
            std::fs::rename(&p, dir.join(name)).map_err(|e| Error::io(&p, e))?;
        }
        write_json(&dir.join(CORPUS_META), meta)
    }
}

/// Whether `dir` holds a prepared corpus (its `corpus.json`).
pub fn is_corpus(dir: &Path) -> bool {
    corpus_state(dir) == CorpusState::Finished
}

/// Reads a prepared corpus's description (`corpus.json`) alone, e.g. to learn its kind
/// before opening it; errors name the folder or the file.
pub fn read_corpus_meta(dir: &Path) -> Result<CorpusMeta> {
    let meta_path = dir.join(CORPUS_META);
    if !meta_path.is_file() {
        return Err(Error::bad_file(dir, "is not a prepared corpus (no corpus.json: made by `convlm prepare`, or its prepare was interrupted)"));
    }
    let meta: CorpusMeta = read_json(&meta_path)?;
    if meta.format != FORMAT || meta.version != VERSION {
        return Err(Error::bad_file(&meta_path, format!("a {} corpus of version {}, this convlm reads {FORMAT} version {VERSION}", meta.format, meta.version)));
    }
    Ok(meta)
}

/// Maps a file read-only.
fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and the file belongs to a prepared corpus that convlm
    // never rewrites in place (a new prepare writes new files and renames them over); a
    // process truncating it behind our back is outside what any reader can defend against.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Opens a prepared corpus: its description, its ids (read where asked, see `store.rs`) and
/// its line boundaries (mapped). A missing or truncated file, or offsets that do not fit the
/// ids, are errors naming the file.
pub fn open_corpus(dir: &Path) -> Result<(CorpusMeta, TokenStore)> {
    let meta = read_corpus_meta(dir)?;
    let meta_path = dir.join(CORPUS_META);
    let tokens_path = dir.join(TOKENS_FILE);
    let ids = File::open(&tokens_path).map_err(|e| Error::io(&tokens_path, e))?;
    let size = ids.metadata().map_err(|e| Error::io(&tokens_path, e))?.len();
    let len = usize::try_from(meta.tokens).map_err(|_| Error::bad_file(&meta_path, "more tokens than this machine can address"))?;
    let want = len.checked_mul(meta.dtype.bytes()).ok_or_else(|| Error::bad_file(&meta_path, "token count overflows"))?;
    if size != want as u64 {
        return Err(Error::bad_file(
            &tokens_path,
            format!("holds {size} bytes but corpus.json says {} {:?} tokens ({want} bytes): truncated or replaced", meta.tokens, meta.dtype),
        ));
    }
    let docs = match meta.kind {
        DatasetKind::Stream => None,
        DatasetKind::Lines | DatasetKind::Grid => {
            let docs_path = dir.join(DOCS_FILE);
            let docs = map(&docs_path)?;
            let want = meta.documents.checked_add(1).and_then(|n| n.checked_mul(8));
            if want != Some(docs.len() as u64) {
                return Err(Error::bad_file(
                    &docs_path,
                    format!("holds {} bytes, corpus.json says {} lines: truncated or replaced", docs.len(), meta.documents),
                ));
            }
            // Offsets must rise from 0 to the token count.
            let mut prev = 0u64;
            for (i, b) in docs.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                if (i == 0 && v != 0) || v < prev || v > meta.tokens {
                    return Err(Error::bad_file(&docs_path, format!("line boundary {i} ({v}) is out of order or past the {} tokens", meta.tokens)));
                }
                prev = v;
            }
            if prev != meta.tokens {
                return Err(Error::bad_file(&docs_path, format!("the last line ends at token {prev}, not at the {} tokens of tokens.bin", meta.tokens)));
            }
            Some(docs)
        }
    };
    let store = TokenStore::file(ids, meta.dtype == Dtype::U32, len, docs, &tokens_path);
    store.advise_random();
    Ok((meta, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: DatasetKind, dtype: Dtype, tokens: u64, documents: u64) -> CorpusMeta {
        CorpusMeta {
            format: FORMAT.into(),
            version: VERSION,
            kind,
            dtype,
            tokens,
            documents,
            vocab_size: 300,
            tokenizer_xxh3: "0".into(),
            source: SourceFingerprint::of_text("t", "t"),
            dedupe: false,
            max_line_len: 1000,
        }
    }

    #[test]
    fn written_corpora_read_back_in_both_widths() {
        for dtype in [Dtype::U16, Dtype::U32] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = CorpusWriter::create(dir.path(), dtype, true).unwrap();
            w.push(&[1, 2]).unwrap();
            w.push(&[299]).unwrap();
            w.end_doc().unwrap();
            w.end_doc().unwrap(); // an empty line
            w.push(&[7]).unwrap();
            w.end_doc().unwrap();
            assert!(!is_corpus(dir.path()), "not a corpus before finish");
            w.finish(&meta(DatasetKind::Grid, dtype, 4, 3)).unwrap();
            let (m, s) = open_corpus(dir.path()).unwrap();
            assert_eq!((m.tokens, s.len(), s.num_docs()), (4, 4, 3));
            assert_eq!(s.read(0..4), [1, 2, 299, 7]);
            assert_eq!((s.doc(0), s.doc(1), s.doc(2)), (0..3, 3..3, 3..4));
        }
    }

    #[test]
    fn truncated_or_inconsistent_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = CorpusWriter::create(dir.path(), Dtype::U16, true).unwrap();
        w.push(&[1, 2, 3]).unwrap();
        w.end_doc().unwrap();
        w.finish(&meta(DatasetKind::Lines, Dtype::U16, 3, 1)).unwrap();
        let tokens = dir.path().join(TOKENS_FILE);
        let bytes = std::fs::read(&tokens).unwrap();
        std::fs::write(&tokens, &bytes[..4]).unwrap();
        let err = open_corpus(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokens.bin") && err.contains("truncated"), "{err}");
        std::fs::write(&tokens, &bytes).unwrap();
        let docs = dir.path().join(DOCS_FILE);
        std::fs::write(&docs, [0u64, 2].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
        let err = open_corpus(dir.path()).unwrap_err().to_string();
        assert!(err.contains("docs.bin") && err.contains("not at the 3 tokens"), "{err}");
        std::fs::remove_file(dir.path().join(CORPUS_META)).unwrap();
        assert!(open_corpus(dir.path()).unwrap_err().to_string().contains("is not a prepared corpus"));
    }
}
