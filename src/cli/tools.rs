//! Commands that need no run: `summary`, `shape`, `bench` and `tokenizer train`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use convlm::bench::{run_workload, BenchOptions, Workload};
use convlm::data::{train_bpe_from_path, Normalization};
use convlm::generate::bench_generation;
use convlm::models::{summary::summary, Model, ModelConfig};
use convlm::run::config::{apply_overrides, load_preset};
use convlm::run::RunConfig;
use convlm::tensor::threads::{init_threads, oversubscription_warning};
use convlm::tensor::{conv_output_len, conv_transpose_output_len};

#[derive(Args)]
pub struct SummaryArgs {
    /// Model family (its defaults), unless --config is given.
    #[arg(long, default_value = "dilated")]
    model: String,
    /// A preset name or TOML file.
    #[arg(long)]
    config: Option<String>,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sequence length (grid side for pixelcnn).
    #[arg(long, default_value_t = 32)]
    length: usize,
    #[arg(long, default_value_t = 30)]
    vocab_size: usize,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args)]
pub struct ShapeArgs {
    #[arg(long)]
    length: usize,
    #[arg(long)]
    kernel: usize,
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// Both sides, or LEFT,RIGHT (e.g. 2,0 for a causal kernel-3 conv).
    #[arg(long, default_value = "0")]
    padding: String,
    #[arg(long, default_value_t = 1)]
    dilation: usize,
    /// A transposed convolution.
    #[arg(long)]
    transposed: bool,
    #[arg(long, default_value_t = 0)]
    output_padding: usize,
}

#[derive(Args)]
pub struct BenchArgs {
    /// w1, w2, w3 or w4 (../shared/bench/WORKLOADS.md): w1, w2 and w4 are registry models
    /// (causal-cnn, dilated, hyena) trained by the same step as `convlm train` on random
    /// tokens; w3 is engine-level
    #[arg(long, value_parser = |s: &str| s.parse::<Workload>().map_err(|e| e.to_string()))]
    workload: Option<Workload>,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Time cached (median of 5 runs) vs naive generation of --tokens tokens with the W1 model.
    #[arg(long)]
    generate: bool,
    /// Where the steps run: cpu, gpu or gpu:N (w1, w2 and w4 run on a GPU as `convlm train
    /// --device gpu` does; the JSON then also gives the adapter and the bytes moved per step)
    #[arg(long, default_value = "cpu", value_parser = super::device::device_arg)]
    device: convlm::tensor::Device,
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
}

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer (with <pad> <bos> <eos> <unk>) on a file or folder.
    Train {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 5000)]
        vocab_size: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        lowercase: bool,
        #[arg(long)]
        nfkc: bool,
    },
}

pub fn cmd_summary(a: SummaryArgs) -> Result<()> {
    let mut config = match &a.config {
        Some(p) => load_preset(p)?,
        None => RunConfig { model: ModelConfig::default_for(&a.model)?, ..RunConfig::default() },
    };
    config = apply_overrides(&config, &a.set)?;
    let model = Model::new(&config.model, a.vocab_size, config.seed)?;
    print!("{}", summary(&model, a.batch, a.length)?);
    Ok(())
}

pub fn cmd_shape(a: ShapeArgs) -> Result<()> {
    let (left, right) = match a.padding.split_once(',') {
        Some((l, r)) => (l.trim().parse().context("--padding LEFT")?, r.trim().parse().context("--padding RIGHT")?),
        None => {
            let p: usize = a.padding.trim().parse().context("--padding")?;
            (p, p)
        }
    };
    let (l, k, s, d) = (a.length, a.kernel, a.stride, a.dilation);
    if a.transposed {
        if left != right {
            bail!("--padding: a transposed convolution takes one symmetric padding");
        }
        let out = conv_transpose_output_len(l, k, s, left, a.output_padding, d)?;
        println!("L_out = (L - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1");
        println!("      = ({l} - 1)·{s} - 2·{left} + {d}·({k} - 1) + {} + 1 = {out}", a.output_padding);
    } else {
        let out = conv_output_len(l, k, s, left, right, d)?;
        println!("L_out = floor((L + pad_left + pad_right - dilation·(kernel - 1) - 1) / stride) + 1");
        println!("      = floor(({l} + {left} + {right} - {d}·({k} - 1) - 1) / {s}) + 1 = {out}");
    }
    Ok(())
}

pub fn cmd_bench(a: BenchArgs) -> Result<()> {
    if let Some(warning) = oversubscription_warning(Some(a.threads)) {
        eprintln!("warning: {warning}");
    }
    init_threads(Some(a.threads));
    if a.generate {
        let config: ModelConfig =
            serde_json::from_str(r#"{"family":"causal-cnn","n_embd":256,"channels":128,"kernel_size":3,"n_layers":6,"activation":"relu"}"#)?;
        let model = Model::new(&config, 5000, a.seed)?;
        let r = bench_generation(&model, a.tokens, a.seed)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let Some(workload) = a.workload else { bail!("--workload w1|w2|w3|w4 or --generate is required") };
    #[cfg(feature = "gpu")]
    let gpu = super::device::open(a.device)?;
    let report = run_workload(&BenchOptions { workload, steps: a.steps, warmup: a.warmup, threads: a.threads, seed: a.seed, device: a.device })?;
    println!("{}", report.to_json_line());
    #[cfg(feature = "gpu")]
    if let Some(gpu) = gpu {
        for (kernel, launches, seconds) in gpu.profile() {
            eprintln!("{seconds:9.4} s {launches:7} launches  {kernel}");
        }
    }
    Ok(())
}

/// `convlm tokenizer train`.
pub fn cmd_tokenizer(command: TokenizerCommand) -> Result<()> {
    match command {
        TokenizerCommand::Train { data, vocab_size, out, lowercase, nfkc } => {
            let norm = Normalization { nfkc, lowercase, ..Normalization::default() };
            let tok = train_bpe_from_path(&data, vocab_size, norm)?;
            tok.save(&out)?;
            println!("wrote {} ({} tokens)", out.display(), tok.vocab_size());
            Ok(())
        }
    }
}
