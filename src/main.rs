//! The `convlm` command line: clap subcommands dispatching to the library.

#![deny(unsafe_op_in_unsafe_fn)]

mod big_alloc;

#[global_allocator]
static GLOBAL: big_alloc::CachingAlloc = big_alloc::CachingAlloc;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use convlm::bench::{run_workload, BenchOptions, Workload};
use convlm::data::{train_bpe_from_path, DatasetKind, Normalization, Split};
use convlm::generate::{bench_generation, SamplingConfig};
use convlm::models::{summary::summary, Model, ModelConfig};
use convlm::optim::{OptimizerKind, Schedule};
use convlm::run::checkpoint::{BEST_FILE, MODEL_FILE};
use convlm::run::config::{apply_overrides, load_preset};
use convlm::run::prepare::{build_dataset, load_text};
use convlm::run::samples::{sample_texts, SampleRequest};
use convlm::run::{evaluate, train, CancelToken, RunConfig, RunDir, TrainEvent, TrainOptions};
use convlm::tensor::threads::init_threads;
use convlm::tensor::{conv_output_len, conv_transpose_output_len};

/// Train, evaluate and sample convolutional language models on the CPU.
#[derive(Parser)]
#[command(name = "convlm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (with no flags: a small dilated CNN on the built-in English word list),
    /// printing validation loss and samples; writes a run directory.
    Train(Box<TrainArgs>),
    /// Sample text from a trained run.
    Sample(SampleArgs),
    /// Loss, perplexity and bits per token of a trained run on a split or another file.
    Eval(EvalArgs),
    /// Draw loss.svg (train raw + smoothed, validation) and embeddings.svg (PCA) for a run.
    Plot(PlotArgs),
    /// Print a layer table (output shapes, parameters, mult-adds) of a model configuration.
    Summary(SummaryArgs),
    /// Output length of a convolution: L_out from length, kernel, stride, padding, dilation.
    Shape(ShapeArgs),
    /// Benchmarks: training-step workloads W1-W3 (same JSON as bench_pytorch.py) or
    /// cached vs naive generation.
    Bench(BenchArgs),
    /// Tokenizer utilities.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
}

#[derive(Args, Default)]
struct TrainArgs {
    /// Training text: a file or a folder of files (default: the built-in word list).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run directory to write (default: runs/<family>).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Model family: mlp, causal-cnn, dilated, hierarchical, wavenet, gated-cnn, pixelcnn.
    #[arg(long)]
    model: Option<String>,
    /// A TOML preset file, or a built-in preset name (names-mlp, names-dilated,
    /// names-hierarchical, shakespeare-cnn, reviews-bpe-cnn).
    #[arg(long)]
    config: Option<String>,
    /// How the text becomes examples: lines, stream or grid.
    #[arg(long, value_parser = serde_name::<DatasetKind>)]
    dataset: Option<DatasetKind>,
    /// Optimizer steps.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<u64>,
    /// Passes over the training split (instead of --steps).
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// sgd, adam or adamw.
    #[arg(long, value_parser = serde_name::<OptimizerKind>)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    #[arg(long)]
    momentum: Option<f32>,
    #[arg(long)]
    weight_decay: Option<f32>,
    /// constant, step, onecycle or cosine.
    #[arg(long)]
    schedule: Option<String>,
    /// Linear warm-up steps.
    #[arg(long)]
    warmup: Option<u64>,
    /// Clip the global gradient norm (0 disables).
    #[arg(long)]
    clip_grad: Option<f32>,
    /// Validate, sample and keep the best model every N steps.
    #[arg(long)]
    eval_every: Option<u64>,
    /// Save a resumable checkpoint every N steps (besides every evaluation).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: CONVLM_THREADS or all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Continue the run in --out from its last checkpoint (exactly: same data order).
    #[arg(long)]
    resume: bool,
    /// Any other setting as KEY=VALUE, e.g. --set model.channels=256 --set data.dedupe=true.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print only the final summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SampleArgs {
    /// Run directory.
    #[arg(long)]
    run: PathBuf,
    /// Number of samples.
    #[arg(short, default_value_t = 20)]
    n: usize,
    /// Text the model reads before sampling.
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the last checkpoint instead of the best one.
    #[arg(long)]
    last: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long)]
    run: PathBuf,
    /// train, val or test.
    #[arg(long, default_value = "val", value_parser = serde_name::<Split>)]
    split: Split,
    /// Evaluate on every example of this file instead of the run's split.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long)]
    last: bool,
}

#[derive(Args)]
struct PlotArgs {
    #[arg(long)]
    run: PathBuf,
}

#[derive(Args)]
struct SummaryArgs {
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
struct ShapeArgs {
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
struct BenchArgs {
    /// w1, w2 or w3 (../shared/bench/WORKLOADS.md).
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
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
}

#[derive(Subcommand)]
enum TokenizerCommand {
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

/// Parses a flag value by the serde name of an enum (e.g. `adamw`, `stream`, `test`).
fn serde_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

fn main() {
    big_alloc::keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", report(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// already holds (convlm's I/O errors print their source themselves).
fn report(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn run(cli: Cli) -> Result<()> {
    match cli.command.unwrap_or_else(|| Command::Train(Box::default())) {
        Command::Train(a) => cmd_train(*a),
        Command::Sample(a) => cmd_sample(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Plot(a) => cmd_plot(a),
        Command::Summary(a) => cmd_summary(a),
        Command::Shape(a) => cmd_shape(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Tokenizer(TokenizerCommand::Train { data, vocab_size, out, lowercase, nfkc }) => {
            let norm = Normalization { nfkc, lowercase, ..Normalization::default() };
            let tok = train_bpe_from_path(&data, vocab_size, norm)?;
            tok.save(&out)?;
            println!("wrote {} ({} tokens)", out.display(), tok.vocab_size());
            Ok(())
        }
    }
}

/// The run configuration from preset, family and flags (flags win).
fn train_config(a: &TrainArgs) -> Result<RunConfig> {
    let mut c = match &a.config {
        Some(p) => load_preset(p)?,
        None => RunConfig::default(),
    };
    if let Some(m) = &a.model {
        c.model = ModelConfig::default_for(m)?;
        if c.model.is_grid() {
            c.data.kind = DatasetKind::Grid;
        } else if c.data.kind == DatasetKind::Grid {
            c.data.kind = DatasetKind::Lines;
        }
    }
    if let Some(d) = &a.data {
        c.data.path = Some(d.clone());
    }
    if let Some(k) = a.dataset {
        c.data.kind = k;
    }
    if let Some(s) = a.steps {
        c.train.steps = s;
        c.train.epochs = None;
    }
    if a.epochs.is_some() {
        c.train.epochs = a.epochs;
    }
    if let Some(v) = a.batch_size {
        c.train.batch_size = v;
    }
    if let Some(v) = a.lr {
        c.optimizer.lr = v;
    }
    if let Some(v) = a.optimizer {
        c.optimizer.kind = v;
    }
    if let Some(v) = a.momentum {
        c.optimizer.momentum = v;
    }
    if let Some(v) = a.weight_decay {
        c.optimizer.weight_decay = v;
    }
    if let Some(s) = &a.schedule {
        c.schedule.schedule = serde_json::from_value::<Schedule>(serde_json::json!({ "schedule": s }))
            .map_err(|_| anyhow::anyhow!("invalid --schedule `{s}`: expected constant, step, onecycle or cosine"))?;
    }
    if let Some(v) = a.warmup {
        c.schedule.warmup_steps = v;
    }
    if let Some(v) = a.clip_grad {
        c.train.clip_grad = (v > 0.0).then_some(v);
    }
    if let Some(v) = a.eval_every {
        c.train.eval_every = v;
    }
    if let Some(v) = a.checkpoint_every {
        c.train.checkpoint_every = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    if a.threads.is_some() {
        c.train.threads = a.threads;
    }
    Ok(apply_overrides(&c, &a.set)?)
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let config = train_config(&a)?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(config.model.family()));
    let run = RunDir::new(&out);
    if !a.resume && run.file(convlm::run::checkpoint::CHECKPOINT_FILE).exists() {
        bail!("{} already holds a run: pass --resume to continue it, or choose another --out", out.display());
    }
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    ctrlc::set_handler(move || on_signal.cancel()).context("installing the Ctrl-C handler")?;
    let opts = TrainOptions { resume: a.resume, samples: !a.quiet, cancel };
    let mut progress = Progress::new(!a.quiet);
    let result = train(&config, &run, &opts, &mut |event| progress.show(event));
    match result {
        Ok(s) => {
            let best = s.best_val_loss.map(|b| format!("{b:.4}")).unwrap_or_else(|| "-".into());
            println!("trained {} steps: train loss {:.4}, best val loss {best}; run saved in {}", s.steps, s.final_train_loss, out.display());
            println!("next: convlm sample --run {0}   |   convlm eval --run {0} --split test   |   convlm plot --run {0}", out.display());
            Ok(())
        }
        Err(convlm::Error::Interrupted { step }) => {
            eprintln!("interrupted at step {step}: checkpoint saved in {}; continue with --resume --out {}", out.display(), out.display());
            std::process::exit(130);
        }
        Err(e @ convlm::Error::NonFinite { .. }) => {
            // Say which checkpoint survives (state.json is written last in a checkpoint).
            let saved = convlm::io::read_json::<convlm::run::checkpoint::TrainState>(&run.file(convlm::run::checkpoint::STATE_FILE))
                .map(|s| format!("the last good checkpoint (step {}) is in {}", s.step, out.display()))
                .unwrap_or_else(|_| format!("no checkpoint was saved in {}", out.display()));
            bail!("{e}; {saved}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads a run's config, tokenizer and model (best or last).
fn load_run(dir: &PathBuf, last: bool) -> Result<(RunDir, RunConfig, convlm::data::Tokenizer, Model)> {
    let run = RunDir::new(dir);
    let config = run.load_config()?;
    let tokenizer = run.load_tokenizer()?;
    let name = if last || !run.file(BEST_FILE).exists() { MODEL_FILE } else { BEST_FILE };
    let model = run.load_model(name, &config, &tokenizer)?;
    Ok((run, config, tokenizer, model))
}

fn cmd_sample(a: SampleArgs) -> Result<()> {
    init_threads(None);
    let (_, config, tokenizer, model) = load_run(&a.run, a.last)?;
    let text = load_text(&config.data).ok();
    let dataset = text.as_deref().and_then(|t| build_dataset(&config.data, t, &tokenizer, config.seed).ok());
    let grid = (config.data.grid_height, config.data.grid_width);
    let sampling = SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, max_tokens: a.max_tokens, seed: a.seed };
    let req = SampleRequest { count: a.n, prompt: a.prompt, sampling };
    for s in sample_texts(&model, &tokenizer, config.data.kind, Some(grid), dataset.as_ref(), &req)? {
        match s.novelty {
            Some(n) => println!("{:<24} {}", s.text, n.name()),
            None => println!("{}\n", s.text),
        }
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    init_threads(None);
    let (_, mut config, tokenizer, mut model) = load_run(&a.run, a.last)?;
    let split = match &a.data {
        Some(path) => {
            // Every example of the file: put it all in the evaluated split.
            config.data.path = Some(path.clone());
            config.data.splits = convlm::data::Splits { train: 0.0, val: 0.0, test: 1.0 };
            Split::Test
        }
        None => a.split,
    };
    let text = load_text(&config.data)?;
    let dataset = build_dataset(&config.data, &text, &tokenizer, config.seed)?;
    let r = evaluate(&mut model, &dataset, split, config.train.batch_size, 0)?;
    println!("split {}: loss {:.4} nats, perplexity {:.3}, {:.4} bits per token ({} tokens)", r.split, r.loss, r.perplexity, r.bits_per_token, r.tokens);
    Ok(())
}

fn cmd_plot(a: PlotArgs) -> Result<()> {
    let run = RunDir::new(&a.run);
    let loss = convlm::run::plots::plot_run(&run)?;
    println!("wrote {}", loss.display());
    let emb = convlm::run::plots::plot_embeddings(&run)?;
    println!("wrote {}", emb.display());
    Ok(())
}

fn cmd_summary(a: SummaryArgs) -> Result<()> {
    let mut config = match &a.config {
        Some(p) => load_preset(p)?,
        None => RunConfig { model: ModelConfig::default_for(&a.model)?, ..RunConfig::default() },
    };
    config = apply_overrides(&config, &a.set)?;
    let model = Model::new(&config.model, a.vocab_size, config.seed)?;
    print!("{}", summary(&model, a.batch, a.length)?);
    Ok(())
}

fn cmd_shape(a: ShapeArgs) -> Result<()> {
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

fn cmd_bench(a: BenchArgs) -> Result<()> {
    init_threads(Some(a.threads));
    if a.generate {
        let config: ModelConfig =
            serde_json::from_str(r#"{"family":"causal-cnn","n_embd":256,"channels":128,"kernel_size":3,"n_layers":6,"activation":"relu"}"#)?;
        let model = Model::new(&config, 5000, a.seed)?;
        let r = bench_generation(&model, a.tokens, a.seed)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let Some(workload) = a.workload else { bail!("--workload w1|w2|w3 or --generate is required") };
    let report = run_workload(&BenchOptions { workload, steps: a.steps, warmup: a.warmup, threads: a.threads, seed: a.seed })?;
    println!("{}", report.to_json_line());
    Ok(())
}

/// The progress bar and the lines `convlm train` prints for the events of a run (nothing
/// but warnings with `--quiet`; no bar when stderr is not a terminal).
struct Progress {
    verbose: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(verbose: bool) -> Self {
        Progress { verbose, bar: None }
    }

    fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => eprintln!("{msg}"),
        }
    }

    fn show(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::Warning(msg) => self.println(&format!("warning: {msg}")),
            _ if !self.verbose => {}
            TrainEvent::Started { family, params, receptive_field, vocab_size, train_examples, run_dir, step, total_steps } => {
                let bar = indicatif::ProgressBar::new(total_steps).with_position(step);
                let style =
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                self.bar = Some(bar);
                self.println(&format!(
                    "{family} model, {params} parameters, receptive field {receptive_field}, vocabulary {vocab_size}, {train_examples} training examples; run directory {}",
                    run_dir.display()
                ));
            }
            TrainEvent::Step { step, loss, tokens_per_s, steps_per_s, .. } => {
                if let Some(b) = &self.bar {
                    b.set_position(step);
                    b.set_message(format!("loss {loss:.4} | {tokens_per_s:.0} tok/s | {steps_per_s:.1} steps/s"));
                }
            }
            TrainEvent::Eval { step, val_loss, best } => {
                self.println(&format!("step {step:>6}  val loss {val_loss:.4}{}", if best { "  (best, saved)" } else { "" }));
            }
            TrainEvent::Samples(samples) => {
                for sample in samples {
                    let tag = sample.novelty.map(|n| format!(" [{}]", n.name())).unwrap_or_default();
                    self.println(&format!("    {}{tag}", sample.text.replace('\n', "\n    ")));
                }
            }
            TrainEvent::Finished => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    }
}
