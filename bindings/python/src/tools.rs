//! The functions of the package that need no run: `prepare`, `presets`, `families`, and the
//! command line itself (`python -m convlm`).

use std::path::PathBuf;

use convlm::data::{
    prepare as prepare_corpus, DatasetKind, LineRules, Normalization, PrepareOptions, Source, SourceOptions, Tokenizer, TokenizerSpec, UnknownPolicy,
};
use pyo3::prelude::*;

use crate::convert::to_py;
use crate::errors::{config_error, IntoPy};
use crate::pool;
use crate::progress::{Bar, Feed};

/// Tokenizes `data` (a text file or a folder read recursively) once into the corpus folder
/// `out`, as `convlm prepare` does, and returns its corpus.json as a dict. `tokenizer` is
/// "char", "bpe" (trained here, `vocab_size` tokens, default 5000) or a tokenizer.json file;
/// `dataset` is "stream" (default), "lines" or "grid"; `force` replaces a corpus already in
/// `out`. Train on it with `convlm.train(data=out, ...)`.
#[pyfunction]
#[pyo3(signature = (data, out, tokenizer="char", vocab_size=None, dataset=None, force=false))]
pub fn prepare<'py>(
    py: Python<'py>,
    data: PathBuf,
    out: PathBuf,
    tokenizer: &str,
    vocab_size: Option<usize>,
    dataset: Option<&str>,
    force: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let kind: DatasetKind = match dataset {
        None => DatasetKind::Stream,
        Some(d) => serde_json::from_value(serde_json::Value::String(d.to_string()))
            .map_err(|_| config_error("dataset", format!("`{d}`: expected lines, stream or grid")))?,
    };
    let spec = match tokenizer {
        "char" => TokenizerSpec::Char,
        "bpe" => TokenizerSpec::Bpe { vocab_size: vocab_size.unwrap_or(5000) },
        file => TokenizerSpec::Given(Tokenizer::load(std::path::Path::new(file)).py_err()?),
    };
    let opts = PrepareOptions {
        kind,
        tokenizer: spec,
        normalization: Normalization::default(),
        unknown: UnknownPolicy::MapToUnk,
        rules: LineRules { dedupe: false, max_line_len: 1000 },
        source: SourceOptions::default(),
    };
    let feed = Feed::new(py, false, Bar::Off)?;
    let meta = pool::run(py, None, None, &feed, move || {
        convlm::run::prepare::check_corpus_out(&out, force)?;
        prepare_corpus(&Source::Path(&data), &opts, &out, |_| {})
    })?
    .py_err()?;
    let value = serde_json::to_value(&meta).map_err(|e| config_error("corpus", e.to_string()))?;
    to_py(py, &value)
}

/// The names of the built-in presets (`config=` of `train`), as in `configs/`.
#[pyfunction]
pub fn presets() -> Vec<&'static str> {
    convlm::run::config::PRESETS.iter().map(|(name, _)| *name).collect()
}

/// The names of the model families (`model=` of `train`).
#[pyfunction]
pub fn families() -> Vec<&'static str> {
    convlm::models::names()
}

/// Runs the `convlm` command line with `argv` (its first item, the program's name, is
/// ignored) and returns its exit status; `python -m convlm` calls it.
#[pyfunction]
pub fn cli_main(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> i32 {
    let args: Vec<std::ffi::OsString> = std::iter::once("convlm".into()).chain(argv.into_iter().skip(1)).collect();
    py.detach(|| crate::cli::main(args))
}
