//! Storing and serving ids, the upper room of the data layer: where a corpus's text comes
//! from (sources read in blocks of whole lines), `prepare` (text → a prepared-corpus folder,
//! docs/corpus-format.md), the folder's files written and opened again as a [`TokenStore`],
//! and the datasets cut from a store: splits, line / stream / grid examples and batches. It
//! encodes text with the tokenize room below it and is never imported by it.

mod batch;
mod claim;
mod construct;
mod dataset;
mod documents;
mod folder;
mod names;
mod prepare;
mod reader;
mod source;
mod split;
mod spool;
mod store;
mod text;

pub use batch::Batch;
pub use claim::{claim_corpus_folder, CorpusLock};
pub use construct::Layout;
pub use dataset::{Dataset, DatasetKind, LineOptions};
pub use documents::{LineEncoder, LineRules, MemorySink, TokenSink};
pub use folder::{is_corpus, open_corpus, read_corpus_meta, CorpusMeta, CorpusWriter, Dtype};
pub use names::{corpus_state, holds_only_corpus_files, is_empty_folder, CorpusState, CORPUS_META, CORPUS_TOKENIZER, DOCS_FILE, TOKENS_FILE};
pub use prepare::{prepare, PrepareOptions, PrepareProgress, Source, TokenizerSpec};
pub use reader::fingerprint_files;
pub use source::{list_sources, FileFingerprint, SourceFile, SourceFingerprint, SourceOptions};
pub use split::{Split, SplitMode, Splits};
pub use store::{ids_hash, TokenStore};
pub use text::{builtin_corpus, read_corpus, read_corpus_with, train_bpe_from_path};
