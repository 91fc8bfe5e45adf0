//! Commands that read a trained run: `sample`, `eval` and `plot`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output::print;
use super::parse::{finite_f32, serde_name};
use convlm::data::Split;
use convlm::generate::SamplingConfig;
use convlm::run::samples::SampleRequest;
use convlm::run::trained::{EvalRequest, TrainedRun};
use convlm::run::RunDir;
use convlm::tensor::threads::init_threads;
use convlm::CancelToken;

#[derive(Args)]
pub struct SampleArgs {
    /// The run directory to sample from
    #[arg(long)]
    run: PathBuf,
    /// Number of samples
    #[arg(short, default_value_t = 20)]
    n: usize,
    /// Text the model reads before sampling
    #[arg(long)]
    prompt: Option<String>,
    /// Most new tokens per sample
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy)
    #[arg(long, default_value_t = 1.0, value_parser = finite_f32)]
    temperature: f32,
    /// Sample only among the K most likely tokens
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities sum to P (nucleus)
    #[arg(long, value_parser = finite_f32)]
    top_p: Option<f32>,
    /// Seed of the sampling: the same seed gives the same text
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the last checkpoint (model.safetensors) instead of the best one on validation
    #[arg(long)]
    last: bool,
    /// Generate on cpu, gpu or gpu:N (the layers' histories stay on the GPU; the sampling and
    /// its seed are the same)
    #[arg(long, default_value = "cpu", value_parser = super::device::device_arg)]
    device: convlm::tensor::Device,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The run directory to evaluate
    #[arg(long)]
    run: PathBuf,
    /// The run's split to score: train, val or test
    #[arg(long, default_value = "val", value_parser = serde_name::<Split>)]
    split: Split,
    /// Score every example of this file (or folder) instead, with the run's tokenizer
    #[arg(long)]
    data: Option<PathBuf>,
    /// Window length for stream data: the split (or --data) is scored over non-overlapping
    /// blocks of this many tokens, each token predicted from its block's earlier ones
    /// [default: the run's]
    #[arg(long)]
    block_size: Option<usize>,
    /// Use the last checkpoint (model.safetensors) instead of the best one on validation
    #[arg(long)]
    last: bool,
    /// Score the run's split although its data files changed since training
    #[arg(long)]
    allow_data_change: bool,
    /// Score on cpu, gpu or gpu:N
    #[arg(long, default_value = "cpu", value_parser = super::device::device_arg)]
    device: convlm::tensor::Device,
}

#[derive(Args)]
pub struct PlotArgs {
    /// The run directory to plot
    #[arg(long)]
    run: PathBuf,
}

pub fn cmd_sample(a: SampleArgs, cancel: CancelToken) -> Result<()> {
    init_threads(None);
    let trained = TrainedRun::open(&a.run, a.last)?;
    // The corpus only marks line samples as in-train / in-test / new: a changed or missing
    // corpus leaves them unmarked, with a word.
    let dataset = trained.lines_dataset(&cancel).unwrap_or_else(|e| {
        eprintln!("warning: samples are not marked in-train / new: {e}");
        None
    });
    let sampling = SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, max_tokens: a.max_tokens, seed: a.seed };
    let req = SampleRequest { count: a.n, prompt: a.prompt, sampling, cancel: Some(cancel) };
    for note in trained.sample_notes(&req)? {
        eprintln!("warning: {note}");
    }
    #[cfg(feature = "gpu")]
    let samples = match super::device::open(a.device)? {
        Some(gpu) => {
            let params = convlm::nn::device::DeviceParams::upload(&gpu, trained.model.params(), trained.model.buffers())?;
            trained.sample_on(convlm::generate::Engine::Gpu(&params), &req, dataset.as_ref())?
        }
        None => trained.sample(&req, dataset.as_ref())?,
    };
    #[cfg(not(feature = "gpu"))]
    let samples = {
        super::device::require_cpu(a.device)?;
        trained.sample(&req, dataset.as_ref())?
    };
    let config = &trained.config;
    let last = samples.len().saturating_sub(1);
    let mut text = String::new();
    for (i, s) in samples.into_iter().enumerate() {
        match s.novelty {
            Some(n) => text.push_str(&format!("{:<24} {}\n", s.text, n.name())),
            None if config.model.is_grid() => {
                // Grids: a rule between them, as wide as a grid.
                text.push_str(&format!("{}\n", s.text));
                if i < last {
                    text.push_str(&format!("{}\n", "-".repeat(config.data.grid_width)));
                }
            }
            None => text.push_str(&format!("{}\n\n", s.text)),
        }
    }
    print(text)
}

pub fn cmd_eval(a: EvalArgs, cancel: CancelToken) -> Result<()> {
    init_threads(None);
    let mut trained = TrainedRun::open(&a.run, a.last)?;
    let req = EvalRequest { split: a.split, data: a.data.as_deref(), block_size: a.block_size, allow_data_change: a.allow_data_change, cancel: Some(&cancel) };
    let warn = |warning| eprintln!("warning: {warning}");
    #[cfg(feature = "gpu")]
    let r = match super::device::open(a.device)? {
        Some(gpu) => {
            let params = convlm::nn::device::DeviceParams::upload(&gpu, trained.model.params(), trained.model.buffers())?;
            trained.evaluate_on(&params, &req, warn)?
        }
        None => trained.evaluate(&req, warn)?,
    };
    #[cfg(not(feature = "gpu"))]
    let r = {
        super::device::require_cpu(a.device)?;
        trained.evaluate(&req, warn)?
    };
    let what = match &a.data {
        Some(path) => format!("{}", path.display()),
        None => format!("split {}", r.split),
    };
    print(format!("{what}: loss {:.4} nats, perplexity {:.3}, {:.4} bits per token ({} tokens)\n", r.loss, r.perplexity, r.bits_per_token, r.tokens))
}

pub fn cmd_plot(a: PlotArgs) -> Result<()> {
    let run = RunDir::new(&a.run);
    let loss = convlm::run::plots::plot_run(&run)?;
    for note in &loss.skipped {
        eprintln!("warning: {note}");
    }
    print(format!("wrote {}\n", loss.path.display()))?;
    let emb = convlm::run::plots::plot_embeddings(&run)?;
    print(format!("wrote {}\n", emb.display()))
}
