//! The `convlm` command line: its subcommands, one file per group (each parses its flags with
//! clap and calls the library), and the error report. The binary runs it (`main.rs`), and so
//! does the Python package (`python -m convlm`), which compiles these same files in.

pub mod inspect;
pub mod parse;
pub mod prepare;
pub mod progress;
#[cfg(target_os = "linux")]
pub mod ranks;
pub mod tools;
pub mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

use inspect::{EvalArgs, PlotArgs, SampleArgs};
use tools::{BenchArgs, ShapeArgs, SummaryArgs, TokenizerCommand};
use train::TrainArgs;

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
    /// Tokenize a corpus once into a folder that training reads windows from (any size: read
    /// in blocks, tokenized in parallel).
    Prepare(prepare::PrepareArgs),
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
    /// Benchmarks: training-step workloads W1-W4 (same JSON as bench_pytorch.py) or
    /// cached vs naive generation.
    Bench(BenchArgs),
    /// Tokenizer utilities.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
}

/// Runs the command line on `args` (the program's name first) and returns the exit status
/// (clap itself exits on `--help` and on flags it cannot parse).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = Cli::parse_from(args);
    convlm::tensor::memory::system::keep_freed_heap();
    if !matches!(cli.command, Some(Command::Prepare(_) | Command::Tokenizer(_) | Command::Shape(_) | Command::Summary(_))) {
        convlm::tensor::memory::system::cache_blocks();
    }
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            1
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// already holds (convlm's I/O errors print their source themselves).
pub(crate) fn report(e: &anyhow::Error) -> String {
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
    let command = cli.command.unwrap_or_else(|| Command::Train(Box::default()));
    if let Some(launch) = convlm::dist::launched().filter(|l| l.size > 1) {
        if !matches!(command, Command::Train(_)) {
            // Said once, by rank 0; the others just fail.
            anyhow::ensure!(launch.rank != 0, "only `convlm train` runs on several processes: start this command without mpirun");
            std::process::exit(1);
        }
    }
    match command {
        Command::Train(a) => train::cmd_train(*a),
        Command::Prepare(a) => prepare::cmd_prepare(a),
        Command::Sample(a) => inspect::cmd_sample(a),
        Command::Eval(a) => inspect::cmd_eval(a),
        Command::Plot(a) => inspect::cmd_plot(a),
        Command::Summary(a) => tools::cmd_summary(a),
        Command::Shape(a) => tools::cmd_shape(a),
        Command::Bench(a) => tools::cmd_bench(a),
        Command::Tokenizer(c) => tools::cmd_tokenizer(c),
    }
}
