//! What a training run tells its caller while it works ([`TrainEvent`]), and how the caller
//! asks it to stop ([`CancelToken`]). The library prints nothing itself: the command line
//! turns events into a progress bar and lines of text, a notebook or a test may do anything
//! else with them.

pub use crate::cancel::CancelToken;
use crate::run::samples::Sample;

/// One thing that happened during training.
#[derive(Debug)]
pub enum TrainEvent<'a> {
    /// The run is set up and about to take its first step (`step` > 0 when resuming).
    Started {
        family: &'a str,
        params: usize,
        receptive_field: usize,
        vocab_size: usize,
        train_examples: usize,
        /// Worker threads of the pool the steps run on.
        threads: usize,
        run_dir: &'a std::path::Path,
        step: u64,
        /// Steps in all (for a time-limited run, an upper bound: the clock ends it).
        total_steps: u64,
        /// The wall-clock budget of a time-limited run, in seconds.
        time_limit_s: Option<f64>,
    },
    /// The steps run on this GPU adapter (`description`: name, backend and kind);
    /// `software` when it emulates a GPU on the CPU.
    Device { description: String, software: bool },
    /// An optimizer step finished.
    Step { step: u64, total_steps: u64, loss: f64, tokens_per_s: f64, steps_per_s: f64, train_seconds: f64 },
    /// A validation pass finished; `best` when it improved on every earlier one (and the
    /// weights were saved as best.safetensors).
    Eval { step: u64, val_loss: f64, best: bool },
    /// Samples drawn after an evaluation (only when [`TrainOptions::samples`](super::TrainOptions) is set).
    Samples(&'a [Sample]),
    /// The corpus is being tokenized into the cache (text given as `--data` the first time).
    Preparing(crate::data::PrepareProgress),
    /// Something went wrong that does not stop the run (a plot that could not be drawn).
    Warning(String),
    /// The loop ended (finished, interrupted or diverged); the summary or error follows.
    Finished,
}

impl TrainEvent<'_> {
    /// The lines a front end prints for this event, as `convlm train` prints them: what the
    /// run is when it starts, the GPU it runs on, each validation loss, each sample (indented); none for steps,
    /// preparation, warnings and the end, which a front end shows its own way.
    pub fn lines(&self) -> Vec<String> {
        match self {
            TrainEvent::Started { family, params, receptive_field, vocab_size, train_examples, threads, run_dir, .. } => vec![format!(
                "{family} model, {params} parameters, receptive field {receptive_field}, vocabulary {vocab_size}, {train_examples} training examples, {threads} thread{}; run directory {}",
                if *threads == 1 { "" } else { "s" },
                run_dir.display()
            )],
            TrainEvent::Device { description, software } => {
                let mut lines = vec![format!("device: {description}")];
                if *software {
                    lines.push("warning: this adapter emulates a GPU on the CPU: expect it to be slower than `--device cpu`".into());
                }
                lines
            }
            TrainEvent::Eval { step, val_loss, best } => vec![format!("step {step:>6}  val loss {val_loss:.4}{}", if *best { "  (best, saved)" } else { "" })],
            TrainEvent::Samples(samples) => samples
                .iter()
                .map(|sample| {
                    let tag = sample.novelty.map(|n| format!(" [{}]", n.name())).unwrap_or_default();
                    format!("    {}{tag}", sample.text.replace('\n', "\n    "))
                })
                .collect(),
            TrainEvent::Step { .. } | TrainEvent::Preparing(_) | TrainEvent::Warning(_) | TrainEvent::Finished => Vec::new(),
        }
    }
}

/// Receives the events of a run (see [`TrainEvent`]).
pub type OnEvent<'a> = &'a mut (dyn FnMut(TrainEvent<'_>) + Send);
