//! `convlm.Run`: a run folder read back — samples, scores, metrics, embeddings and weights, as
//! `convlm sample`, `convlm eval` and `convlm plot` read them (the library's `TrainedRun`).

use std::path::PathBuf;

use convlm::data::DatasetKind;
use convlm::generate::SamplingConfig;
use convlm::run::checkpoint::{BEST_FILE, METRICS_FILE, MODEL_FILE};
use convlm::run::metrics::read_records;
use convlm::run::plots::EMBEDDING_PARAM;
use convlm::run::samples::SampleRequest;
use convlm::run::trained::{EvalRequest, TrainedRun};
use convlm::run::{EvalReport, RunDir};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::IntoPy;
use crate::pool;
use crate::progress::Feed;
use crate::trainer::parse_split;

/// A trained (or training) run: the folder `convlm train` writes. `Run(path)` reads the one
/// in `path`; `convlm.train` and `Trainer.run` return one.
#[pyclass(module = "convlm", name = "Run", frozen)]
pub struct Run {
    path: PathBuf,
}

impl Run {
    pub fn at(path: PathBuf) -> Run {
        Run { path }
    }

    /// The run's config, tokenizer and model (best, or `last`), read on the pool.
    fn open(&self, py: Python<'_>, last: bool) -> PyResult<TrainedRun> {
        let path = self.path.clone();
        pool::run(py, None, None, &Feed::quiet(), move || TrainedRun::open(&path, last))?.py_err()
    }
}

/// An evaluation report as a dict: loss, perplexity, bits_per_token, tokens.
pub fn report_dict<'py>(py: Python<'py>, r: &EvalReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("loss", r.loss)?;
    d.set_item("perplexity", r.perplexity)?;
    d.set_item("bits_per_token", r.bits_per_token)?;
    d.set_item("tokens", r.tokens)?;
    Ok(d)
}

#[pymethods]
impl Run {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        // What `convlm sample --run` and `convlm eval --run` read first, with their errors.
        RunDir::new(&path).load_config().py_err()?;
        Ok(Run { path })
    }

    /// The run folder.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("pathlib")?.getattr("Path")?.call1((self.path.clone(),))
    }

    /// The run's config.json as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // Checked by the library, then read by Python's JSON reader: numbers as the file has them.
        let run = RunDir::new(&self.path);
        run.load_config().py_err()?;
        let path = run.file(convlm::run::checkpoint::CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| crate::errors::to_py(convlm::Error::io(&path, e)))?;
        py.import("json")?.getattr("loads")?.call1((text,))
    }

    /// Samples `n` texts as `convlm sample` does: the same seed gives the same texts.
    /// `prompt` is read first (after <bos> for line data), `max_tokens` bounds each sample
    /// (default 256), `temperature` 0 is greedy, `top_k` / `top_p` narrow the choice, `seed`
    /// defaults to the command's 0, and `last` samples the last checkpoint instead of the
    /// best model on validation.
    #[pyo3(signature = (n=1, prompt="", max_tokens=None, temperature=1.0, top_k=None, top_p=None, seed=None, last=false))]
    #[allow(clippy::too_many_arguments)]
    fn sample(
        &self,
        py: Python<'_>,
        n: usize,
        prompt: &str,
        max_tokens: Option<usize>,
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: Option<u64>,
        last: bool,
    ) -> PyResult<Vec<String>> {
        let sampling = SamplingConfig { temperature, top_k, top_p, max_tokens: max_tokens.unwrap_or(256), seed: seed.unwrap_or(0) };
        let req = SampleRequest { count: n, prompt: (!prompt.is_empty()).then(|| prompt.to_string()), sampling };
        let path = self.path.clone();
        let samples = pool::run(py, None, None, &Feed::quiet(), move || TrainedRun::open(&path, last)?.sample(&req, None))?.py_err()?;
        Ok(samples.into_iter().map(|s| s.text).collect())
    }

    /// The loss (nats per token), perplexity, bits per token and token count of the best model
    /// on all of `split` ("train", "val" or "test"), as `convlm eval` scores it; `data` scores
    /// every example of another file instead, `block_size` sets the window of stream data.
    #[pyo3(signature = (split="val", data=None, block_size=None))]
    fn evaluate<'py>(&self, py: Python<'py>, split: &str, data: Option<PathBuf>, block_size: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
        let split = parse_split(split)?;
        let path = self.path.clone();
        let feed = Feed::quiet();
        let mut on_event = feed.on_event();
        let report = pool::run(py, None, None, &feed, move || {
            let req = EvalRequest { split, data: data.as_deref(), block_size, allow_data_change: false };
            TrainedRun::open(&path, false)?.evaluate(&req, |w| on_event(convlm::run::TrainEvent::Warning(w)))
        })?
        .py_err()?;
        report_dict(py, &report)
    }

    /// Every record of metrics.jsonl: a dict per training step (step, loss, lr, grad_norm,
    /// step_ms, tokens_per_s) and per evaluation (step, val_loss).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let path = RunDir::new(&self.path).file(METRICS_FILE);
        // The library checks every line (a torn last one, from a kill, is left out); Python's
        // own JSON reader then reads them, every number exactly as the file has it.
        let records = read_records(&path).py_err()?;
        let text = std::fs::read_to_string(&path).map_err(|e| crate::errors::to_py(convlm::Error::io(&path, e)))?;
        let loads = py.import("json")?.getattr("loads")?;
        let list = PyList::empty(py);
        for line in text.lines().filter(|l| !l.trim().is_empty()).take(records.len()) {
            list.append(loads.call1((line,))?)?;
        }
        Ok(list)
    }

    /// The metrics as a pandas DataFrame (needs pandas), one row per record.
    fn metrics_frame<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pandas =
            py.import("pandas").map_err(|e| pyo3::exceptions::PyImportError::new_err(format!("Run.metrics_frame needs pandas (pip install pandas): {e}")))?;
        pandas.getattr("DataFrame")?.call1((self.metrics(py)?,))
    }

    /// The tokens (their text) and the (vocab_size, n_embd) token embedding table of the best
    /// model (the last checkpoint with `last`).
    #[pyo3(signature = (last=false))]
    fn embeddings<'py>(&self, py: Python<'py>, last: bool) -> PyResult<Bound<'py, PyTuple>> {
        let trained = self.open(py, last)?;
        let path = trained.run.file(trained.weights);
        let table = &trained
            .model
            .params()
            .find(EMBEDDING_PARAM)
            .ok_or_else(|| {
                crate::errors::to_py(convlm::Error::bad_file(&path, format!("the {} model has no {EMBEDDING_PARAM}", trained.config.model.family())))
            })?
            .value;
        let tokens: Vec<String> = (0..table.shape()[0] as u32).map(|id| trained.tokenizer.token_text(id)).collect();
        let array = PyArray1::from_slice(py, table.data()).reshape(table.shape().to_vec())?;
        PyTuple::new(py, [tokens.into_pyobject(py)?.into_any(), array.into_any()])
    }

    /// The weights with PyTorch's state_dict names and layouts, as float32 NumPy arrays: the
    /// best model on validation (best.safetensors), or with best=False the last checkpoint
    /// (model.safetensors). They load into `../shared/reference/models.py` with strict=True
    /// (through `torch.from_numpy`).
    #[pyo3(signature = (best=true))]
    fn state_dict<'py>(&self, py: Python<'py>, best: bool) -> PyResult<Bound<'py, PyDict>> {
        let run = RunDir::new(&self.path);
        let name = if best && run.file(BEST_FILE).is_file() { BEST_FILE } else { MODEL_FILE };
        let file = run.require(name).py_err()?;
        let (tensors, _) = pool::run(py, None, None, &Feed::quiet(), move || convlm::io::load_safetensors(&file))?.py_err()?;
        let d = PyDict::new(py);
        for (name, t) in tensors {
            let shape = t.shape().to_vec();
            let array = PyArray1::from_vec(py, t.into_data()).reshape(shape)?;
            d.set_item(name, array)?;
        }
        Ok(d)
    }

    /// The model's layer table (output shapes, parameters, mult-adds), as `convlm summary`
    /// prints it, for one sequence of the run's data.
    fn summary(&self, py: Python<'_>) -> PyResult<String> {
        let trained = self.open(py, false)?;
        let (c, model) = (&trained.config, &trained.model);
        let shape = match c.data.kind {
            DatasetKind::Grid => vec![1, c.data.grid_height, c.data.grid_width],
            DatasetKind::Stream => vec![1, c.data.block_size],
            DatasetKind::Lines => vec![1, 32],
        };
        let mut shape = shape;
        if let (Some(max), false) = (model.max_len(), c.data.kind == DatasetKind::Grid) {
            shape[1] = shape[1].min(max);
        }
        let summary = convlm::models::summary::summary_for_shape(model, &shape).py_err()?;
        Ok(summary.to_string())
    }

    fn __repr__(&self) -> String {
        format!("Run({:?})", self.path.display().to_string())
    }

    fn __fspath__(&self) -> String {
        self.path.display().to_string()
    }
}
