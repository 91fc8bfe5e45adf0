//! How `convlm train` shows a run: a progress bar on stderr and a line per evaluation, per
//! sample and per warning, from the library's [`TrainEvent`]s.

use convlm::run::TrainEvent;

/// The progress bar and the lines printed for the events of a run (nothing but warnings when
/// not verbose; no bar when stderr is not a terminal).
pub struct Progress {
    verbose: bool,
    bar: Option<indicatif::ProgressBar>,
    /// The run has a time limit: the bar counts seconds.
    timed: bool,
}

impl Progress {
    pub fn new(verbose: bool) -> Self {
        Progress { verbose, bar: None, timed: false }
    }

    /// Prints a line above the bar (or on stderr when there is none).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(msg),
            _ => super::output::err(msg),
        }
    }

    pub fn show(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::Warning(msg) => self.println(&format!("warning: {msg}")),
            TrainEvent::Device { .. } => event.lines().iter().for_each(|line| self.println(line)),
            _ if !self.verbose => {}
            TrainEvent::Started { step, total_steps, time_limit_s, .. } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                // A time-limited run's bar counts seconds of its budget; others count steps.
                let (len, template) = match time_limit_s {
                    Some(limit) => (limit.ceil() as u64, "{bar:30} {pos}/{len} s {msg}"),
                    None => (total_steps, "{bar:30} {pos}/{len} {msg} ETA {eta}"),
                };
                self.timed = time_limit_s.is_some();
                let bar = indicatif::ProgressBar::new(len).with_position(if self.timed { 0 } else { step });
                let style = indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                self.bar = Some(bar);
                event.lines().iter().for_each(|line| self.println(line));
            }
            TrainEvent::Step { step, loss, tokens_per_s, steps_per_s, train_seconds, .. } => {
                if let Some(b) = &self.bar {
                    let speed = format!("loss {loss:.4} | {tokens_per_s:.0} tok/s | {steps_per_s:.1} steps/s");
                    if self.timed {
                        b.set_position(train_seconds as u64);
                        b.set_message(format!("step {step} | {speed}"));
                    } else {
                        b.set_position(step);
                        b.set_message(speed);
                    }
                }
            }
            TrainEvent::Eval { .. } | TrainEvent::Samples(_) => event.lines().iter().for_each(|line| self.println(line)),
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
