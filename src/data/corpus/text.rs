//! Reading training text whole: a file, a folder of files, or the built-in word list.

use std::path::Path;

use super::reader::Blocks;
use super::source::{list_sources, SourceFingerprint, SourceOptions};
use crate::data::tokenize::{train_bpe, Normalization, Tokenizer};
use crate::{Error, Result};

/// Reads a corpus: the file at `path`, or every regular file under the folder at `path`
/// (recursively; names starting with `.` are skipped; symbolic links are followed)
/// concatenated in sorted relative-path order, with a newline added after a file that does not
/// end with one so that two files never share a line. Non-regular files (FIFOs, devices) are
/// refused; see [`read_corpus_with`].
///
/// Each file must be UTF-8 (a leading byte-order mark is dropped); a file that is not, or
/// that contains a NUL byte (a binary file), is an [`Error::BadFile`] naming the file and the
/// byte offset of the first bad byte. CRLF line ends become LF (a lone CR is kept). A file
/// with no text or only whitespace is an error; inside a folder such files are skipped, and
/// the folder is an error only when no file has text.
pub fn read_corpus(path: &Path) -> Result<String> {
    Ok(read_corpus_with(path, &SourceOptions::default())?.0)
}

/// [`read_corpus`] with explicit options, also returning the corpus's fingerprint (every
/// file's name, size and content hash, computed while reading).
pub fn read_corpus_with(path: &Path, opts: &SourceOptions) -> Result<(String, SourceFingerprint)> {
    let files = list_sources(path, opts)?;
    let is_dir = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.is_dir();
    if files.is_empty() {
        return Err(Error::bad_file(path, "the corpus folder has no regular files"));
    }
    let (mut corpus, mut file_text) = (String::new(), String::new());
    let mut blocks = Blocks::files(&files, opts);
    for block in blocks.by_ref() {
        let block = block?;
        file_text.push_str(&block.text);
        if block.last_of_file {
            let text = std::mem::take(&mut file_text);
            if text.trim().is_empty() {
                if !is_dir {
                    return Err(Error::bad_file(path, "the corpus file is empty (no text)"));
                }
            } else {
                corpus.push_str(&text);
                if is_dir && !corpus.ends_with('\n') {
                    corpus.push('\n');
                }
            }
        }
    }
    if corpus.is_empty() {
        return Err(Error::bad_file(path, format!("all {} files of the corpus folder are empty (no text)", files.len())));
    }
    Ok((corpus, blocks.fingerprint()))
}

/// The built-in corpus for a run without data: the English word list of the
/// [`random_word`](https://crates.io/crates/random_word) crate, version 0.5 (feature `en`,
/// MIT licence), compiled into the binary, one word per line in the crate's order.
pub fn builtin_corpus() -> String {
    let words = random_word::all(random_word::Lang::En);
    let mut text = String::with_capacity(words.iter().map(|w| w.len() + 1).sum());
    for word in words {
        text.push_str(word);
        text.push('\n');
    }
    text
}

/// Trains a byte-level BPE tokenizer on a file or a folder: the text [`read_corpus`] reads,
/// given to [`train_bpe`].
pub fn train_bpe_from_path(path: &Path, vocab_size: usize, normalization: Normalization) -> Result<Tokenizer> {
    train_bpe(&[read_corpus(path)?], vocab_size, normalization)
}
