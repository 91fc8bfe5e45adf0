//! A run's data: from a [`DataConfig`] to its tokenizer, its tokens (a memory-mapped
//! prepared corpus) and its split dataset — one path for every kind of `--data`:
//!
//! - a prepared corpus folder (`convlm prepare`) is opened as it is;
//! - a text file or folder, or the built-in word list, is prepared once into the corpus cache
//!   (`$CONVLM_CACHE`, else `$XDG_CACHE_HOME/convlm`, else `~/.cache/convlm`), keyed by the
//!   fingerprint of its files and the preparation settings, and opened from there. Training,
//!   `--resume`, `eval` and `sample` of a run on the same text share that one tokenization.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::CancelToken;
use crate::data::{
    builtin_corpus, fingerprint_files, is_corpus, list_sources, open_corpus, prepare, CorpusMeta, Dataset, DatasetKind, FileFingerprint, Layout, LineRules,
    PrepareOptions, PrepareProgress, Source, SourceFingerprint, SourceOptions, TokenStore, Tokenizer, TokenizerSpec, CORPUS_META, CORPUS_TOKENIZER,
};
use crate::error::{Error, Result};
use crate::run::config::{DataConfig, TokenizerKind};

/// Name the built-in word list goes by in fingerprints and errors.
const BUILTIN: &str = "built-in word list";
/// Bumped when prepared corpora change format or meaning: old cache entries are not reused.
const CACHE_VERSION: u32 = 1;

/// A run's data, opened.
pub struct RunData {
    pub tokenizer: Tokenizer,
    pub store: Arc<TokenStore>,
    pub meta: CorpusMeta,
    /// What the run records to notice a changed corpus: the source files, or for a
    /// prepared corpus its files and its `corpus.json`.
    pub fingerprint: SourceFingerprint,
    /// Where the prepared corpus lies.
    pub corpus_dir: PathBuf,
}

/// The folder of prepared corpora made from text.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONVLM_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("convlm");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("convlm"),
        None => std::env::temp_dir().join("convlm-cache"),
    }
}

/// The source options of a data config; `cancel` stops reading.
fn source_options(cfg: &DataConfig, cancel: &CancelToken) -> SourceOptions {
    SourceOptions { allow_special_files: cfg.allow_special_files, special_file_limit: cfg.special_file_limit, cancel: cancel.clone() }
}

/// How a data config prepares text, with `given` as the tokenizer when there is one (a
/// resumed run's, or eval's of another file).
fn prepare_options(cfg: &DataConfig, given: Option<&Tokenizer>, cancel: &CancelToken) -> Result<PrepareOptions> {
    let tokenizer = match (given, &cfg.tokenizer_file, cfg.tokenizer) {
        (Some(t), _, _) => TokenizerSpec::Given(t.clone()),
        (None, Some(file), _) => TokenizerSpec::Given(Tokenizer::load(file)?),
        (None, None, TokenizerKind::Char) => TokenizerSpec::Char,
        (None, None, TokenizerKind::Bpe) => TokenizerSpec::Bpe { vocab_size: cfg.bpe_vocab_size },
    };
    // Grids keep every line; the layout happens when the dataset is cut.
    let kind = cfg.kind;
    let rules = LineRules { dedupe: cfg.dedupe && kind == DatasetKind::Lines, max_line_len: cfg.max_line_len };
    Ok(PrepareOptions { kind, tokenizer, normalization: cfg.normalization, unknown: cfg.unknown, rules, source: source_options(cfg, cancel) })
}

/// The cache key of preparing `fingerprint` with `opts`.
fn cache_key(fingerprint: &SourceFingerprint, opts: &PrepareOptions) -> Result<String> {
    let tokenizer = match &opts.tokenizer {
        TokenizerSpec::Char => "char".to_string(),
        TokenizerSpec::Bpe { vocab_size } => format!("bpe-{vocab_size}"),
        TokenizerSpec::Given(t) => format!("given-{:016x}", xxhash_rust::xxh3::xxh3_64(t.to_json()?.as_bytes())),
    };
    // Modification times do not change what a corpus holds.
    let files: Vec<(&str, u64, &str)> = fingerprint.files.iter().map(|f| (f.name.as_str(), f.size, f.xxh3.as_str())).collect();
    let text = format!(
        "v{CACHE_VERSION}/{files:?}/{tokenizer}/{:?}/{:?}/{:?}/{:?}/{}/{}",
        opts.kind, opts.normalization, opts.unknown, opts.rules.dedupe, opts.rules.max_line_len, opts.source.special_file_limit
    );
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())))
}

/// Opens the data of `cfg`: a prepared corpus as it is, text through the cache (prepared
/// there first when it is not yet; `on_progress` hears how that goes). With `given`, text
/// is tokenized with that tokenizer (scoring another file with a run's), and a prepared
/// corpus must have been made with it (an error naming the corpus otherwise). A cancelled
/// `cancel` stops the reading and preparing with [`Error::Cancelled`], leaving nothing in
/// the cache.
pub fn open_data(cfg: &DataConfig, given: Option<&Tokenizer>, on_progress: impl Fn(&PrepareProgress) + Sync, cancel: &CancelToken) -> Result<RunData> {
    if let Some(dir) = cfg.path.as_deref().filter(|p| is_corpus(p)) {
        let data = open_prepared(cfg, dir)?;
        if let Some(t) = given {
            check_same_tokenizer(t, &data)?;
        }
        return Ok(data);
    }
    let opts = prepare_options(cfg, given, cancel)?;
    let builtin;
    let files;
    let (source, fingerprint) = match &cfg.path {
        Some(path) => {
            // Listed once: a special file is read once, and every pass reads its copy.
            files = list_sources(path, &opts.source)?;
            (Source::Listed { path, files: &files }, fingerprint_files(&files, &opts.source)?)
        }
        None => {
            builtin = builtin_corpus();
            (Source::Text { name: BUILTIN, text: &builtin }, SourceFingerprint::of_text(BUILTIN, &builtin))
        }
    };
    let root = cache_root().join("corpora");
    let dir = root.join(cache_key(&fingerprint, &opts)?);
    if !is_corpus(&dir) {
        // Prepared beside its final place and renamed in: a reader never sees half a
        // corpus, and two processes preparing the same corpus both end with a whole one.
        let partial = root.join(format!(".{}.{}.partial", dir.file_name().and_then(|n| n.to_str()).unwrap_or("corpus"), std::process::id()));
        let result = prepare(&source, &opts, &partial, on_progress);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        if std::fs::rename(&partial, &dir).is_err() {
            // Another process finished the same corpus first.
            let _ = std::fs::remove_dir_all(&partial);
            if !is_corpus(&dir) {
                return Err(Error::bad_file(&dir, "could not move the prepared corpus into the cache"));
            }
        }
    }
    let (meta, store) = open_corpus(&dir)?;
    let tokenizer = corpus_tokenizer(&dir, &meta)?;
    Ok(RunData { tokenizer, store: Arc::new(store), meta, fingerprint, corpus_dir: dir })
}

/// The tokenizer of the prepared corpus in `dir`, checked against the hash `corpus.json`
/// records: an edited `tokenizer.json` (or an edited hash) would give the ids other text.
fn corpus_tokenizer(dir: &Path, meta: &CorpusMeta) -> Result<Tokenizer> {
    let path = dir.join(CORPUS_TOKENIZER);
    let tokenizer = Tokenizer::load(&path)?;
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(tokenizer.to_json()?.as_bytes()));
    if hash != meta.tokenizer_xxh3 {
        return Err(Error::bad_file(
            &path,
            format!(
                "is not the tokenizer this corpus was made with ({CORPUS_META} records {}, the file hashes to {hash}): edited or replaced, its ids would read as other text; prepare the corpus again",
                meta.tokenizer_xxh3
            ),
        ));
    }
    if tokenizer.vocab_size() != meta.vocab_size {
        return Err(Error::bad_file(
            &path,
            format!("has {} tokens but {CORPUS_META} says {}: prepare the corpus again", tokenizer.vocab_size(), meta.vocab_size),
        ));
    }
    Ok(tokenizer)
}

/// A prepared corpus given as `--data`.
fn open_prepared(cfg: &DataConfig, dir: &Path) -> Result<RunData> {
    let (meta, store) = open_corpus(dir)?;
    if meta.kind != cfg.kind {
        return Err(Error::bad_file(
            dir,
            format!(
                "is a corpus prepared as {} data, but the run asks for {} (by --dataset, data.kind or its preset): prepare it again with --dataset {}, or train on it as {} data",
                meta.kind.name(),
                cfg.kind.name(),
                cfg.kind.name(),
                meta.kind.name()
            ),
        ));
    }
    let tokenizer = corpus_tokenizer(dir, &meta)?;
    let meta_path = dir.join(CORPUS_META);
    let bytes = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let mut fingerprint = meta.source.clone();
    fingerprint.files.push(FileFingerprint {
        name: CORPUS_META.into(),
        size: bytes.len() as u64,
        modified: None,
        xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
    });
    Ok(RunData { tokenizer, store: Arc::new(store), meta, fingerprint, corpus_dir: dir.to_path_buf() })
}

/// Errors, naming the corpus, unless its ids were made by `tokenizer` (a run's).
pub fn check_same_tokenizer(tokenizer: &Tokenizer, data: &RunData) -> Result<()> {
    let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(tokenizer.to_json()?.as_bytes()));
    if hash != data.meta.tokenizer_xxh3 {
        return Err(Error::bad_file(
            &data.corpus_dir,
            format!(
                "was tokenized with another tokenizer than the run's (its tokenizer.json hashes to {}, the run's to {hash}): its ids mean other text to this model",
                data.meta.tokenizer_xxh3
            ),
        ));
    }
    Ok(())
}

/// Cuts the run's data into the configured dataset, split by `seed`.
pub fn build_dataset(cfg: &DataConfig, data: &RunData, seed: u64) -> Result<Dataset> {
    let layout = Layout { kind: cfg.kind, block_size: cfg.block_size, grid: (cfg.grid_width, cfg.grid_height), splits: cfg.splits, mode: cfg.split, seed };
    Dataset::from_store(data.store.clone(), &data.tokenizer, &layout)
}
