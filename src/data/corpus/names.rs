//! The file names of a prepared corpus folder (docs/corpus-format.md) and what a folder
//! holding them is: a finished corpus, or the leftovers of an interrupted `convlm prepare`.

use std::path::Path;

/// The description file of a prepared corpus, written last.
pub const CORPUS_META: &str = "corpus.json";
/// The token ids.
pub const TOKENS_FILE: &str = "tokens.bin";
/// The line boundaries.
pub const DOCS_FILE: &str = "docs.bin";
/// The tokenizer.
pub const CORPUS_TOKENIZER: &str = "tokenizer.json";

/// `name` inside a corpus folder while it is being written: hidden, renamed when done.
pub fn partial_name(name: &str) -> String {
    format!(".{name}.partial")
}

/// What a folder is, as a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorpusState {
    /// It has a `corpus.json`.
    Finished,
    /// Token files without a `corpus.json`: a prepare that did not finish.
    Unfinished,
    /// Anything else (a folder of text, a file, nothing).
    NotACorpus,
}

/// What `dir` is, as a corpus.
pub fn corpus_state(dir: &Path) -> CorpusState {
    if dir.join(CORPUS_META).is_file() {
        CorpusState::Finished
    } else if [TOKENS_FILE.to_string(), partial_name(TOKENS_FILE)].iter().any(|name| dir.join(name).is_file()) {
        CorpusState::Unfinished
    } else {
        CorpusState::NotACorpus
    }
}

/// Whether every entry of `dir` is a corpus file or a partial one: such a folder can be
/// written over without losing anything else.
pub fn holds_only_corpus_files(dir: &Path) -> bool {
    let names = [CORPUS_META, TOKENS_FILE, DOCS_FILE, CORPUS_TOKENIZER];
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.into_iter().all(|e| e.ok().and_then(|e| e.file_name().into_string().ok()).is_some_and(|n| names.iter().any(|&c| n == c || n == partial_name(c))))
}
