//! `convlm.Tokenizer`: the library's character and byte-level BPE tokenizers.

use std::path::PathBuf;

use convlm::data::{train_bpe_from_path, Normalization};
use pyo3::prelude::*;

use crate::errors::IntoPy;
use crate::pool;
use crate::progress::Feed;

/// A tokenizer: characters or byte-level BPE, with the special tokens <pad> <bos> <eos> <unk>
/// (a run's tokenizer.json, a prepared corpus's, or one trained here). Any tokenizer.json of
/// the `tokenizers` library loads.
#[pyclass(module = "convlm", name = "Tokenizer", frozen)]
pub struct Tokenizer {
    inner: convlm::data::Tokenizer,
}

#[pymethods]
impl Tokenizer {
    /// Trains a byte-level BPE tokenizer of `vocab_size` tokens on a text file or a folder of
    /// them, as `convlm tokenizer train` does.
    #[staticmethod]
    #[pyo3(signature = (data, vocab_size=5000, lowercase=false, nfkc=false))]
    fn train(py: Python<'_>, data: PathBuf, vocab_size: usize, lowercase: bool, nfkc: bool) -> PyResult<Tokenizer> {
        let norm = Normalization { nfkc, lowercase, ..Normalization::default() };
        let inner = pool::run(py, None, None, &Feed::quiet(), move || train_bpe_from_path(&data, vocab_size, norm))?.py_err()?;
        Ok(Tokenizer { inner })
    }

    /// Reads a tokenizer.json.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Tokenizer> {
        Ok(Tokenizer { inner: convlm::data::Tokenizer::load(&path).py_err()? })
    }

    /// Writes the tokenizer as tokenizer.json to `path`.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.inner.save(&path).py_err()
    }

    /// The token ids of `text`.
    fn encode(&self, text: &str) -> PyResult<Vec<u32>> {
        self.inner.encode(text).py_err()
    }

    /// The text of token ids.
    fn decode(&self, ids: Vec<u32>) -> String {
        self.inner.decode(&ids)
    }

    /// Tokens in all, special ones included.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer(vocab_size={})", self.inner.vocab_size())
    }
}
