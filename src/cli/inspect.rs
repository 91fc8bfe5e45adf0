//! Commands that read a trained run: `sample`, `eval` and `plot`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::parse::{finite_f32, serde_name};
use convlm::data::{Split, Splits, Tokenizer};
use convlm::generate::SamplingConfig;
use convlm::models::Model;
use convlm::run::checkpoint::{BEST_FILE, MODEL_FILE};
use convlm::run::prepare::{build_dataset, check_same_tokenizer, open_data};
use convlm::run::samples::{sample_texts, SampleRequest};
use convlm::run::{evaluate, RunConfig, RunDir};
use convlm::tensor::threads::init_threads;

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

/// A run's config, tokenizer and model (best or last), after checking that config.json and
/// tokenizer.json are the files the run was trained with.
fn load_run(dir: &Path, last: bool) -> Result<(RunDir, RunConfig, Tokenizer, Model)> {
    let run = RunDir::new(dir);
    let config = run.load_config()?;
    let tokenizer = run.load_tokenizer()?;
    let name = if last || !run.file(BEST_FILE).exists() { MODEL_FILE } else { BEST_FILE };
    let model = run.load_model(name, &config, &tokenizer)?;
    if let Some(manifest) = run.manifest()? {
        run.check_setup(&manifest, &config)?;
    }
    Ok((run, config, tokenizer, model))
}

pub fn cmd_sample(a: SampleArgs) -> Result<()> {
    init_threads(None);
    let (run, config, tokenizer, model) = load_run(&a.run, a.last)?;
    // The corpus only marks line samples as in-train / in-test / new: a changed or missing
    // corpus leaves them unmarked, with a word.
    let dataset = if config.data.kind == convlm::data::DatasetKind::Lines {
        let checked = open_data(&config.data, None, |_| {}).and_then(|data| {
            if let Some(m) = run.manifest()? {
                run.check_data(&m, &data.fingerprint, false)?;
            }
            check_same_tokenizer(&tokenizer, &data)?;
            build_dataset(&config.data, &data, config.seed)
        });
        match checked {
            Ok(dataset) => Some(dataset),
            Err(e) => {
                eprintln!("warning: samples are not marked in-train / new: {e}");
                None
            }
        }
    } else {
        None
    };
    let grid = (config.data.grid_height, config.data.grid_width);
    let sampling = SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, max_tokens: a.max_tokens, seed: a.seed };
    let req = SampleRequest { count: a.n, prompt: a.prompt, sampling };
    #[cfg(feature = "gpu")]
    let samples = match super::device::open(a.device)? {
        Some(gpu) => {
            let params = convlm::nn::device::DeviceParams::upload(&gpu, model.params(), model.buffers())?;
            let engine = convlm::generate::Engine::Gpu(&params);
            convlm::run::samples::sample_texts_on(&model, engine, &tokenizer, config.data.kind, Some(grid), dataset.as_ref(), &req)?
        }
        None => sample_texts(&model, &tokenizer, config.data.kind, Some(grid), dataset.as_ref(), &req)?,
    };
    #[cfg(not(feature = "gpu"))]
    let samples = {
        super::device::require_cpu(a.device)?;
        sample_texts(&model, &tokenizer, config.data.kind, Some(grid), dataset.as_ref(), &req)?
    };
    let last = samples.len().saturating_sub(1);
    for (i, s) in samples.into_iter().enumerate() {
        match s.novelty {
            Some(n) => println!("{:<24} {}", s.text, n.name()),
            None if config.model.is_grid() => {
                // Grids: a rule between them, as wide as a grid.
                println!("{}", s.text);
                if i < last {
                    println!("{}", "-".repeat(config.data.grid_width));
                }
            }
            None => println!("{}\n", s.text),
        }
    }
    Ok(())
}

pub fn cmd_eval(a: EvalArgs) -> Result<()> {
    init_threads(None);
    let (run, mut config, tokenizer, mut model) = load_run(&a.run, a.last)?;
    let split = match &a.data {
        Some(path) => {
            // Every example of the file, in one split, as the run cuts its own data.
            config.data.path = Some(path.clone());
            config.data.splits = Splits::EVAL_ONLY;
            Split::Test
        }
        None => a.split,
    };
    if let Some(b) = a.block_size {
        // Stream chunks do not depend on the block size (unless a block outgrows them), so
        // the run's splits stay the same texts.
        config.data.block_size = b;
    }
    // Another file is tokenized with the run's tokenizer; the run's own data was already.
    let given = a.data.as_ref().map(|_| &tokenizer);
    let data = open_data(&config.data, given, |_| {})?;
    if a.data.is_none() {
        if let Some(manifest) = run.manifest()? {
            if let Some(warning) = run.check_data(&manifest, &data.fingerprint, a.allow_data_change)? {
                eprintln!("warning: {warning}");
            }
        }
        check_same_tokenizer(&tokenizer, &data)?;
    }
    let dataset = build_dataset(&config.data, &data, config.seed)?;
    #[cfg(feature = "gpu")]
    let r = match super::device::open(a.device)? {
        Some(gpu) => {
            let params = convlm::nn::device::DeviceParams::upload(&gpu, model.params(), model.buffers())?;
            convlm::run::device::evaluate_on_device(&model, &params, &dataset, split, config.train.batch_size, 0)?
        }
        None => evaluate(&mut model, &dataset, split, config.train.batch_size, 0)?,
    };
    #[cfg(not(feature = "gpu"))]
    let r = {
        super::device::require_cpu(a.device)?;
        evaluate(&mut model, &dataset, split, config.train.batch_size, 0)?
    };
    let what = match &a.data {
        Some(path) => format!("{}", path.display()),
        None => format!("split {}", r.split),
    };
    println!("{what}: loss {:.4} nats, perplexity {:.3}, {:.4} bits per token ({} tokens)", r.loss, r.perplexity, r.bits_per_token, r.tokens);
    Ok(())
}

pub fn cmd_plot(a: PlotArgs) -> Result<()> {
    let run = RunDir::new(&a.run);
    let loss = convlm::run::plots::plot_run(&run)?;
    println!("wrote {}", loss.display());
    let emb = convlm::run::plots::plot_embeddings(&run)?;
    println!("wrote {}", emb.display());
    Ok(())
}
