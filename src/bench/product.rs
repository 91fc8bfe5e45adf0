//! The workloads that run the product: a model built from the registry (W1 = `causal-cnn`,
//! W2 = `dilated`, W4 = `hyena`, with the settings of `../shared/bench/WORKLOADS.md`), a
//! stream dataset over random tokens cut and batched like a corpus, an Adam optimizer, and
//! per step exactly what `convlm train` does: draw a batch, then
//! [`train_step`](crate::run::step::train_step).

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::data::{CharTokenizer, Dataset, DatasetKind, Layout, Normalization, Split, SplitMode, Splits, TokenStore, Tokenizer, UnknownPolicy};
use crate::error::{Error, Result};
use crate::models::{Model, ModelConfig};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::run::step::{train_step, StepOutcome, StepSettings};
use crate::tensor::{Device, Precision};

/// A registry model with its batch shape and the parameter count PyTorch's module has.
#[derive(Clone, Debug)]
pub struct ProductSpec {
    /// The family and its settings, as a config file gives them.
    pub config: ModelConfig,
    pub vocab_size: usize,
    pub batch_size: usize,
    pub block_size: usize,
    pub expected_params: usize,
}

impl ProductSpec {
    /// Builds the spec from a config's JSON.
    pub fn new(model: serde_json::Value, vocab_size: usize, batch_size: usize, block_size: usize, expected_params: usize) -> Result<Self> {
        let config = ModelConfig::from_value(model).map_err(|e| Error::config("workload", e))?;
        Ok(ProductSpec { config, vocab_size, batch_size, block_size, expected_params })
    }

    /// W1 "reviews-cnn": the `reviews-bpe-cnn` preset's model (causal CNN, BPE-5000,
    /// 3,549,832 parameters), batch 16 × 256 tokens. (WORKLOADS.md's W1 has no activation
    /// after its first conv; the family has one: one ReLU more, the same parameters.)
    pub fn w1() -> Result<Self> {
        let model = json!({"family": "causal-cnn", "n_embd": 256, "channels": 128, "kernel_size": 3, "n_layers": 6, "activation": "relu"});
        Self::new(model, 5000, 16, 256, 3_549_832)
    }

    /// W2 "names-dilated": the `dilated` family (embedding 24, 128 channels, kernel 2,
    /// dilations 1, 2, 4, 8, tanh, a linear head), vocabulary 28, batch 32 × 24.
    pub fn w2() -> Result<Self> {
        let model = json!({"family": "dilated", "n_embd": 24, "channels": 128, "kernel_size": 2, "dilations": [1, 2, 4, 8], "activation": "tanh"});
        Self::new(model, 28, 32, 24, 109_244)
    }

    /// W4 "hyena-long": the `hyena` family (d_model 128, 4 layers, max_len 1024, mlp_ratio 4,
    /// filter_emb_dim 3, filter_width 64, filter_inner 2), bytes (vocabulary 256), batch 4 × 1024.
    pub fn w4() -> Result<Self> {
        let model = json!({"family": "hyena", "d_model": 128, "n_layers": 4, "max_len": 1024, "mlp_ratio": 4,
            "filter_emb_dim": 3, "filter_width": 64, "filter_inner": 2});
        Self::new(model, 256, 4, 1024, 933_120)
    }
}

/// Tokens in the random stream: enough for many distinct windows of any workload.
const STREAM_TOKENS: usize = 1 << 20;

/// A stream dataset over `STREAM_TOKENS` uniform random ids in `[0, vocab_size)` (all of
/// it for training), with a character tokenizer of that vocabulary size.
pub fn random_stream(vocab_size: usize, block_size: usize, seed: u64) -> Result<Dataset> {
    if vocab_size < 5 {
        return Err(Error::config("vocab_size", "a random stream needs the 4 special tokens and at least one more"));
    }
    // Any vocab_size - 4 distinct characters: their ids follow the special tokens.
    let chars: BTreeSet<char> = (0..vocab_size as u32 - 4).filter_map(|i| char::from_u32(0x100 + i)).collect();
    let tokenizer = Tokenizer::Char(CharTokenizer::from_alphabet(chars, Normalization::default(), UnknownPolicy::MapToUnk));
    if tokenizer.vocab_size() != vocab_size {
        return Err(Error::config("vocab_size", format!("{vocab_size} is more than a random character vocabulary can hold")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..STREAM_TOKENS).map(|_| rng.gen_range(0..vocab_size as u32)).collect();
    let layout =
        Layout { kind: DatasetKind::Stream, block_size, grid: (0, 0), splits: Splits { train: 1.0, val: 0.0, test: 0.0 }, mode: SplitMode::Dealt, seed };
    Dataset::from_store(Arc::new(TokenStore::owned(ids, None)), &tokenizer, &layout)
}

/// A product workload ready to step.
pub struct ProductRun {
    pub model: Model,
    optimizer: Optimizer,
    dataset: Dataset,
    rng: ChaCha8Rng,
    batch_size: usize,
    lr: f32,
    steps: u64,
    precision: Precision,
    /// The GPU the steps run on (as `convlm train --device gpu` takes them).
    #[cfg(feature = "gpu")]
    pub device: Option<crate::run::device::DeviceRun>,
}

impl ProductRun {
    /// The model (seeded by `seed`), Adam at lr 1e-3, and the random stream, stepped on
    /// `device` with the products in `precision`.
    pub fn new(spec: &ProductSpec, seed: u64, precision: Precision, device: Device) -> Result<Self> {
        precision.check_cpu()?;
        let model = Model::new(&spec.config, spec.vocab_size, seed)?;
        let numel = model.params().numel();
        if numel != spec.expected_params {
            return Err(Error::config("workload", format!("the {} model has {numel} parameters, PyTorch's {}", spec.config.family(), spec.expected_params)));
        }
        let lr = 1e-3;
        let cfg = OptimizerConfig { kind: OptimizerKind::Adam, lr, weight_decay: 0.0, ..OptimizerConfig::default() };
        let optimizer = Optimizer::new(&cfg, model.params())?;
        let dataset = random_stream(spec.vocab_size, spec.block_size, seed.wrapping_add(1))?;
        #[cfg(feature = "gpu")]
        let device = match device {
            Device::Cpu => None,
            d => Some(crate::run::device::DeviceRun::new(&crate::tensor::gpu::GpuDevice::open(d)?, &model, &optimizer)?),
        };
        #[cfg(not(feature = "gpu"))]
        if !device.is_cpu() {
            return Err(Error::device(format!("{device}: this build has no GPU support (built without the `gpu` feature)")));
        }
        Ok(ProductRun {
            model,
            optimizer,
            dataset,
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(2)),
            batch_size: spec.batch_size,
            lr,
            steps: 0,
            precision,
            #[cfg(feature = "gpu")]
            device,
        })
    }

    /// One training step as `convlm train` takes it: a batch, then [`train_step`]. Returns
    /// the batch's loss before the update.
    pub fn step(&mut self) -> Result<f64> {
        let batch = self.dataset.sample_batch(Split::Train, self.batch_size, &mut self.rng);
        self.steps += 1;
        let settings = StepSettings { lr: self.lr, clip_grad: None, dropout_seed: self.steps, precision: self.precision };
        #[cfg(feature = "gpu")]
        let outcome = match &mut self.device {
            Some(d) => d.step(&mut self.model, &mut self.optimizer, &batch, settings)?,
            None => train_step(&mut self.model, &mut self.optimizer, &batch, settings)?,
        };
        #[cfg(not(feature = "gpu"))]
        let outcome = train_step(&mut self.model, &mut self.optimizer, &batch, settings)?;
        match outcome {
            StepOutcome::Done(stats) => Ok(stats.loss),
            StepOutcome::Diverged { what } => Err(Error::NonFinite { step: self.steps, what }),
        }
    }
}
