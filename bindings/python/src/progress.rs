//! A call's training events on their way to Python ([`Feed`]): the worker thread queues them
//! (the latest step only, the lines in order), and the waiting thread hands them, with the GIL,
//! to a `convlm._progress.Progress` (a tqdm.auto bar, or plain lines) and warnings to Python's
//! `warnings`.

use std::ffi::CString;
use std::sync::{Arc, Mutex};

use convlm::run::TrainEvent;
use pyo3::exceptions::PyRuntimeWarning;
use pyo3::prelude::*;

/// What the bar of a call counts.
#[derive(Clone, Copy, Debug)]
pub enum Bar {
    /// The whole run, from its start (`train`): steps, or seconds of a time budget.
    Run,
    /// This call's `n` steps, the run being at step `from` (`Trainer.step`).
    Steps { from: u64, n: u64 },
    /// No bar: lines only.
    Off,
}

/// One thing to show.
enum Msg {
    Start { total: u64, initial: u64, unit: &'static str },
    Line(String),
    Warning(String),
    Close,
}

#[derive(Default)]
struct Queue {
    msgs: Vec<Msg>,
    /// The bar's latest position and its text (steps come too fast to show each).
    position: Option<(u64, String)>,
    /// The run counts seconds of a time budget.
    timed: bool,
}

/// The events of one call, and where they go (`progress` is `None` when progress is off;
/// warnings go to Python's `warnings` either way).
pub struct Feed {
    queue: Arc<Mutex<Queue>>,
    progress: Option<Py<PyAny>>,
    bar: Bar,
}

impl Feed {
    /// A feed showing progress when `show` (with a bar as `bar` says).
    pub fn new(py: Python<'_>, show: bool, bar: Bar) -> PyResult<Feed> {
        let progress = if show { Some(py.import("convlm._progress")?.getattr("Progress")?.call0()?.unbind()) } else { None };
        Ok(Feed { queue: Arc::default(), progress, bar })
    }

    /// A feed that shows nothing but warnings.
    pub fn quiet() -> Feed {
        Feed { queue: Arc::default(), progress: None, bar: Bar::Off }
    }

    /// The event handler for the library (runs on a worker thread).
    pub fn on_event(&self) -> impl FnMut(TrainEvent<'_>) + Send + 'static {
        let queue = self.queue.clone();
        let (show, bar) = (self.progress.is_some(), self.bar);
        if let (Bar::Steps { n, .. }, true) = (bar, show) {
            if n > 1 {
                lock(&queue).msgs.push(Msg::Start { total: n, initial: 0, unit: "step" });
            }
        }
        move |event: TrainEvent<'_>| {
            let mut q = lock(&queue);
            match &event {
                TrainEvent::Warning(w) => q.msgs.push(Msg::Warning(w.clone())),
                _ if !show => {}
                TrainEvent::Started { total_steps, step, time_limit_s, .. } => {
                    if let Bar::Run = bar {
                        q.timed = time_limit_s.is_some();
                        let (total, initial, unit) = match time_limit_s {
                            Some(limit) => (limit.ceil() as u64, 0, "s"),
                            None => (*total_steps, *step, "step"),
                        };
                        q.msgs.push(Msg::Start { total, initial, unit });
                    }
                    q.msgs.extend(event.lines().into_iter().map(Msg::Line));
                }
                TrainEvent::Step { step, loss, tokens_per_s, steps_per_s, train_seconds, .. } => {
                    let speed = format!("loss {loss:.4} | {tokens_per_s:.0} tok/s | {steps_per_s:.1} steps/s");
                    q.position = match bar {
                        Bar::Run if q.timed => Some((*train_seconds as u64, format!("step {step} | {speed}"))),
                        Bar::Run => Some((*step, speed)),
                        Bar::Steps { from, n } if n > 1 => Some((step.saturating_sub(from), format!("step {step} | {speed}"))),
                        _ => None,
                    };
                }
                TrainEvent::Preparing(p) => {
                    if q.position.is_none() && !q.msgs.iter().any(|m| matches!(m, Msg::Start { unit: "B", .. })) {
                        q.msgs.push(Msg::Start { total: p.total_bytes, initial: 0, unit: "B" });
                    }
                    q.position = Some((p.bytes, format!("preparing the corpus ({})", p.phase)));
                }
                TrainEvent::Finished => q.msgs.push(Msg::Close),
                _ => q.msgs.extend(event.lines().into_iter().map(Msg::Line)),
            }
        }
    }

    /// Hands what was queued to Python (with the GIL).
    pub fn deliver(&self, py: Python<'_>) -> PyResult<()> {
        let (msgs, position) = {
            let mut q = lock(&self.queue);
            (std::mem::take(&mut q.msgs), q.position.take())
        };
        for msg in msgs {
            // A bar's last position comes before the bar closes.
            if let (Msg::Close, Some((pos, text))) = (&msg, &position) {
                self.call(py, "update", (*pos, text.clone()))?;
            }
            match msg {
                Msg::Warning(w) => {
                    let text = CString::new(w.replace('\0', " ")).unwrap_or_default();
                    PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &text, 1)?;
                }
                Msg::Start { total, initial, unit } => self.call(py, "start", (total, initial, unit))?,
                Msg::Line(line) => self.call(py, "write", (line,))?,
                Msg::Close => self.call(py, "close", ())?,
            }
        }
        if let Some((pos, text)) = position {
            self.call(py, "update", (pos, text))?;
        }
        Ok(())
    }

    /// Closes the bar of a call (after its last events are delivered).
    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.deliver(py)?;
        self.call(py, "close", ())
    }

    fn call<'py, A: pyo3::call::PyCallArgs<'py>>(&self, py: Python<'py>, method: &str, args: A) -> PyResult<()> {
        match &self.progress {
            Some(p) => p.bind(py).call_method1(method, args).map(|_| ()),
            None => Ok(()),
        }
    }
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}
