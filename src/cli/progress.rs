//! How `convlm train` shows a run: a progress bar on stderr and a line per evaluation, per
//! sample and per warning, from the library's [`TrainEvent`]s.

use convlm::run::TrainEvent;

/// The progress bar and the lines printed for the events of a run (nothing but warnings when
/// not verbose; no bar when stderr is not a terminal).
pub struct Progress {
    verbose: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(verbose: bool) -> Self {
        Progress { verbose, bar: None }
    }

    /// Prints a line above the bar (or on stderr when there is none).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => eprintln!("{msg}"),
        }
    }

    pub fn show(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::Warning(msg) => self.println(&format!("warning: {msg}")),
            _ if !self.verbose => {}
            TrainEvent::Started { family, params, receptive_field, vocab_size, train_examples, run_dir, step, total_steps } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
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
            TrainEvent::Preparing(p) => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = indicatif::ProgressBar::new(p.total_bytes);
                    let style = indicatif::ProgressStyle::with_template("preparing the corpus ({msg}) {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar
                });
                bar.set_message(p.phase);
                bar.set_position(p.bytes);
            }
            TrainEvent::Finished => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    }
}
