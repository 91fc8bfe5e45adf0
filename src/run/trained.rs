//! A trained run read back ([`TrainedRun`]): its config, tokenizer and model (best or last),
//! checked against the files it was trained with, and what `convlm sample` and `convlm eval`
//! do with it — the same for every front end (the command line, the Python package).

use std::path::Path;

use crate::cancel::CancelToken;
use crate::data::{Dataset, DatasetKind, Split, Splits, Tokenizer};
use crate::error::Result;
use crate::generate::Engine;
use crate::models::Model;
use crate::run::checkpoint::{RunDir, BEST_FILE, MODEL_FILE};
use crate::run::config::RunConfig;
use crate::run::eval::{evaluate_cancellable, EvalReport};
use crate::run::prepare::{build_dataset, check_same_tokenizer, open_data};
use crate::run::samples::{request_notes, sample_texts_on, Sample, SampleRequest};

/// A run's config, tokenizer and model.
pub struct TrainedRun {
    pub run: RunDir,
    pub config: RunConfig,
    pub tokenizer: Tokenizer,
    pub model: Model,
    /// The weights file the model was read from (best.safetensors or model.safetensors).
    pub weights: &'static str,
}

/// What to score ([`TrainedRun::evaluate`]).
#[derive(Clone, Debug)]
pub struct EvalRequest<'a> {
    /// The run's split to score.
    pub split: Split,
    /// Score every example of this file (or folder) instead, with the run's tokenizer.
    pub data: Option<&'a Path>,
    /// Window length for stream data (default: the run's).
    pub block_size: Option<usize>,
    /// Score the run's split although its data files changed since training.
    pub allow_data_change: bool,
    /// Stops reading the data and scoring with [`crate::Error::Cancelled`] (Ctrl-C).
    pub cancel: Option<&'a CancelToken>,
}

impl TrainedRun {
    /// Reads the run in `dir`: its best model (best.safetensors), or with `last` (or before
    /// the first evaluation) its last checkpoint (model.safetensors), after checking that
    /// config.json and tokenizer.json are the files the run was trained with.
    pub fn open(dir: &Path, last: bool) -> Result<TrainedRun> {
        let run = RunDir::new(dir);
        let config = run.load_config()?;
        let tokenizer = run.load_tokenizer()?;
        let weights = if last || !run.file(BEST_FILE).exists() { MODEL_FILE } else { BEST_FILE };
        let model = run.load_model(weights, &config, &tokenizer)?;
        if let Some(manifest) = run.manifest()? {
            run.check_setup(&manifest, &config)?;
        }
        Ok(TrainedRun { run, config, tokenizer, model, weights })
    }

    /// The run's own dataset, to mark line samples as in-train / in-test / new (`None` for
    /// other kinds of data); an error when the data is gone or changed since training.
    /// `cancel` stops the reading of the data.
    pub fn lines_dataset(&self, cancel: &CancelToken) -> Result<Option<Dataset>> {
        if self.config.data.kind != DatasetKind::Lines {
            return Ok(None);
        }
        let data = open_data(&self.config.data, None, |_| {}, cancel)?;
        if let Some(m) = self.run.manifest()? {
            self.run.check_data(&m, &data.fingerprint, false)?;
        }
        check_same_tokenizer(&self.tokenizer, &data)?;
        build_dataset(&self.config.data, &data, self.config.seed).map(Some)
    }

    /// What `req` asks that the run cannot do as asked (prompt characters outside the
    /// vocabulary, samples a model's window ends early), one warning each.
    pub fn sample_notes(&self, req: &SampleRequest) -> Result<Vec<String>> {
        request_notes(&self.model, &self.tokenizer, self.config.data.kind, req)
    }

    /// Samples texts as `convlm sample` does; `dataset` (from [`TrainedRun::lines_dataset`])
    /// marks line samples.
    pub fn sample(&self, req: &SampleRequest, dataset: Option<&Dataset>) -> Result<Vec<Sample>> {
        self.sample_on(Engine::Cpu, req, dataset)
    }

    /// Samples as [`TrainedRun::sample`] does, on `engine`: the CPU, or a GPU holding this
    /// run's model (the same tokens for the same seed).
    pub fn sample_on(&self, engine: Engine<'_>, req: &SampleRequest, dataset: Option<&Dataset>) -> Result<Vec<Sample>> {
        let grid = (self.config.data.grid_height, self.config.data.grid_width);
        sample_texts_on(&self.model, engine, &self.tokenizer, self.config.data.kind, Some(grid), dataset, req)
    }

    /// The loss, perplexity and bits per token of the model on all of a split, or of another
    /// file, as `convlm eval` scores them; `warn` hears of data changed since training (when
    /// allowed).
    pub fn evaluate(&mut self, req: &EvalRequest<'_>, warn: impl FnMut(String)) -> Result<EvalReport> {
        let (dataset, split) = self.eval_data(req, warn)?;
        let never = CancelToken::new();
        evaluate_cancellable(&mut self.model, &dataset, split, self.config.train.batch_size, 0, req.cancel.unwrap_or(&never))
    }

    /// Scores as [`TrainedRun::evaluate`] does, on the GPU that holds `params` (this run's
    /// model, uploaded with [`crate::nn::device::DeviceParams::upload`]).
    #[cfg(feature = "gpu")]
    pub fn evaluate_on(&self, params: &crate::nn::device::DeviceParams, req: &EvalRequest<'_>, warn: impl FnMut(String)) -> Result<EvalReport> {
        let (dataset, split) = self.eval_data(req, warn)?;
        let never = CancelToken::new();
        crate::run::device::evaluate_on_device(&self.model, params, &dataset, split, self.config.train.batch_size, 0, req.cancel.unwrap_or(&never))
    }

    /// The dataset and split that `req` scores.
    fn eval_data(&self, req: &EvalRequest<'_>, mut warn: impl FnMut(String)) -> Result<(Dataset, Split)> {
        let mut config = self.config.clone();
        let split = match req.data {
            Some(path) => {
                // Every example of the file, in one split, as the run cuts its own data.
                config.data.path = Some(path.to_path_buf());
                config.data.splits = Splits::EVAL_ONLY;
                Split::Test
            }
            None => req.split,
        };
        if let Some(b) = req.block_size {
            // Stream chunks do not depend on the block size (unless a block outgrows them), so
            // the run's splits stay the same texts.
            config.data.block_size = b;
        }
        // Another file is tokenized with the run's tokenizer; the run's own data was already.
        let given = req.data.map(|_| &self.tokenizer);
        let never = CancelToken::new();
        let cancel = req.cancel.unwrap_or(&never);
        let data = open_data(&config.data, given, |_| {}, cancel)?;
        if req.data.is_none() {
            if let Some(manifest) = self.run.manifest()? {
                if let Some(warning) = self.run.check_data(&manifest, &data.fingerprint, req.allow_data_change)? {
                    warn(warning);
                }
            }
            check_same_tokenizer(&self.tokenizer, &data)?;
        }
        Ok((build_dataset(&config.data, &data, config.seed)?, split))
    }
}
