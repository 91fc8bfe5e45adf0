//! `convlm.Trainer` (a run taken a number of steps at a time from Python) and `convlm.train`
//! (a whole run), over the library's `run::Trainer`: the arguments are `convlm train`'s flags,
//! read by the library's `TrainFlags`.

use std::path::PathBuf;
use std::sync::Mutex;

use convlm::data::Split;
use convlm::run::{CancelToken, RunDir, TrainFlags, TrainOptions};
use convlm::tensor::Precision;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::{from_py, to_py};
use crate::errors::{config_error, IntoPy};
use crate::pool;
use crate::progress::{Bar, Feed};
use crate::run::{report_dict, Run};

/// `time_limit`: seconds, or a duration such as "15m" or "1h30m".
#[derive(FromPyObject)]
pub enum TimeLimit {
    Seconds(f64),
    Text(String),
}

/// The flags of `convlm train` from the arguments of `train` / `Trainer`.
#[allow(clippy::too_many_arguments)]
fn flags(
    data: Option<PathBuf>,
    config: Option<PathBuf>,
    model: Option<String>,
    out: Option<PathBuf>,
    steps: Option<u64>,
    time_limit: Option<TimeLimit>,
    seed: Option<u64>,
    threads: Option<usize>,
    resume: bool,
    force: bool,
    settings: Option<&Bound<'_, PyDict>>,
    precision: Option<&str>,
) -> PyResult<TrainFlags> {
    let precision = precision.map(str::parse::<Precision>).transpose().py_err()?;
    let time_limit = match time_limit {
        None => None,
        Some(TimeLimit::Seconds(s)) => Some(convlm::run::budget::parse_duration(&s.to_string()).py_err()?),
        Some(TimeLimit::Text(t)) => Some(convlm::run::budget::parse_duration(&t).py_err()?),
    };
    let mut set = Vec::new();
    for (key, value) in settings.map(|d| d.iter().collect::<Vec<_>>()).unwrap_or_default() {
        let key: String = key.extract().map_err(|_| config_error("settings", "the keys are dotted names of settings, e.g. \"model.channels\""))?;
        set.push(convlm::run::flags::setting(&key, &from_py(&key, &value)?));
    }
    Ok(TrainFlags {
        data,
        out,
        model,
        config: config.map(|c| c.to_string_lossy().into_owned()),
        steps,
        time_limit,
        seed,
        threads,
        precision,
        resume,
        force,
        set,
        ..TrainFlags::default()
    })
}

/// Opens the library's trainer that `flags` ask for (new, or resumed in `out`).
fn open(py: Python<'_>, flags: &TrainFlags, opts: &TrainOptions, feed: &Feed) -> PyResult<(convlm::run::Trainer, PathBuf)> {
    // Training allocates the same large buffers every step: keep freed ones for reuse, as the
    // binary does for `convlm train` (without, each step page-faults them back in).
    convlm::tensor::memory::system::cache_blocks();
    let mut on_event = feed.on_event();
    pool::run(py, flags.threads, None, feed, || -> convlm::Result<_> {
        if flags.resume {
            let out = flags.out_dir(None)?;
            let run = RunDir::new(&out);
            flags.check_unchanged(&run)?;
            Ok((convlm::run::Trainer::resume(&run, &flags.resume_options(), opts, &mut on_event)?, out))
        } else {
            let config = flags.new_config()?;
            let out = flags.out_dir(Some(&config))?;
            Ok((convlm::run::Trainer::new(&config, &RunDir::new(&out), opts, &mut on_event)?, out))
        }
    })?
    .py_err()
}

/// Trains a model as `convlm train` does and returns its run.
///
/// The arguments are the command's flags: `data` (a text file, a folder, or a prepared corpus;
/// default: the built-in English word list), `config` (a preset name such as
/// "names-dilated" or a TOML file), `model` (a family), `out` (the run folder; default
/// runs/<family>), `steps`, `time_limit` (seconds, or "15m"), `seed`, `threads`, `resume`
/// (continue the run in `out` exactly), `force` (move what `out` holds aside) and `settings`,
/// a dict of `--set` keys such as {"model.channels": 256}, and `precision` ("fp32", or
/// "bf16" on CPUs with AVX512_BF16: matmuls and convolutions in bf16 with fp32
/// accumulation, as `--precision`; "auto": bf16 where the CPU has it). `progress` shows a bar (tqdm.auto
/// when installed), the validation loss and samples; False shows nothing.
///
/// Ctrl-C (or Jupyter's interrupt) stops at the next step, saves a checkpoint and raises
/// KeyboardInterrupt; `train(out=..., resume=True)` continues exactly.
#[pyfunction]
#[pyo3(signature = (data=None, config=None, model=None, out=None, steps=None, time_limit=None, seed=None, threads=None, resume=false, force=false, progress=true, settings=None, precision=None))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    data: Option<PathBuf>,
    config: Option<PathBuf>,
    model: Option<String>,
    out: Option<PathBuf>,
    steps: Option<u64>,
    time_limit: Option<TimeLimit>,
    seed: Option<u64>,
    threads: Option<usize>,
    resume: bool,
    force: bool,
    progress: bool,
    settings: Option<&Bound<'_, PyDict>>,
    precision: Option<&str>,
) -> PyResult<Run> {
    let flags = flags(data, config, model, out, steps, time_limit, seed, threads, resume, force, settings, precision)?;
    let cancel = CancelToken::new();
    let opts = TrainOptions { samples: progress, cancel: cancel.clone(), force, ..TrainOptions::default() };
    let feed = Feed::new(py, progress, Bar::Run)?;
    let (mut trainer, out) = open(py, &flags, &opts, &feed)?;
    let mut on_event = feed.on_event();
    let finished = pool::run(py, flags.threads, Some(&cancel), &feed, || {
        let result = (|| {
            while trainer.step(&mut on_event)?.is_some() {}
            trainer.finish(&mut on_event)
        })();
        on_event(convlm::run::TrainEvent::Finished);
        drop(trainer);
        result
    });
    feed.close(py)?;
    finished?.py_err()?;
    Ok(Run::at(out))
}

/// A training run taken a number of steps at a time, for a loop written in Python that plots,
/// stops early or changes course: `Trainer(...)` takes the arguments of `convlm.train` and
/// opens the run (a new one, or with resume=True the one in `out`); `step(n)` takes n steps
/// with everything `convlm train` does around them (the metrics log, the periodic evaluation
/// and checkpoint, the time limit). The run folder stays locked until `close()` (or the end
/// of a `with` block, or the trainer's deletion).
///
/// Ctrl-C (or Jupyter's interrupt) during `step` stops at the next step, saves a checkpoint
/// and raises KeyboardInterrupt; the trainer can step on from there.
#[pyclass(module = "convlm", name = "Trainer")]
pub struct Trainer {
    inner: Mutex<Option<convlm::run::Trainer>>,
    path: PathBuf,
    cancel: CancelToken,
    threads: Option<usize>,
    progress: bool,
}

impl Trainer {
    /// Runs `f` on the open trainer, on the pool, with the GIL released.
    fn with_trainer<R: Send>(&self, py: Python<'_>, feed: &Feed, f: impl FnOnce(&mut convlm::run::Trainer) -> convlm::Result<R> + Send) -> PyResult<R> {
        // Never waits for the lock: its holder may need the GIL this thread holds.
        let mut guard = self.inner.try_lock().map_err(|_| PyRuntimeError::new_err("the trainer is busy with a call from another thread"))?;
        let trainer = guard.as_mut().ok_or_else(|| PyRuntimeError::new_err(format!("the trainer of {} is closed", self.path.display())))?;
        pool::run(py, self.threads, Some(&self.cancel), feed, || f(trainer))?.py_err()
    }
}

#[pymethods]
impl Trainer {
    #[new]
    #[pyo3(signature = (data=None, config=None, model=None, out=None, steps=None, time_limit=None, seed=None, threads=None, resume=false, force=false, progress=true, settings=None, precision=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        data: Option<PathBuf>,
        config: Option<PathBuf>,
        model: Option<String>,
        out: Option<PathBuf>,
        steps: Option<u64>,
        time_limit: Option<TimeLimit>,
        seed: Option<u64>,
        threads: Option<usize>,
        resume: bool,
        force: bool,
        progress: bool,
        settings: Option<&Bound<'_, PyDict>>,
        precision: Option<&str>,
    ) -> PyResult<Self> {
        let flags = flags(data, config, model, out, steps, time_limit, seed, threads, resume, force, settings, precision)?;
        let cancel = CancelToken::new();
        let opts = TrainOptions { samples: progress, cancel: cancel.clone(), force, ..TrainOptions::default() };
        let feed = Feed::new(py, progress, Bar::Off)?;
        let (trainer, path) = open(py, &flags, &opts, &feed)?;
        Ok(Trainer { inner: Mutex::new(Some(trainer)), path, cancel, threads: flags.threads, progress })
    }

    /// Takes up to `n` steps and returns the metrics record of each (the step's line in
    /// metrics.jsonl: step, loss, lr, grad_norm, step_ms, tokens_per_s, and val_loss when the
    /// step ended with the periodic evaluation). Fewer once the run has taken all its steps
    /// (none when it had).
    #[pyo3(signature = (n=1))]
    fn step<'py>(&self, py: Python<'py>, n: u64) -> PyResult<Bound<'py, PyList>> {
        let from = self.read(|t| t.steps_done())?;
        let feed = Feed::new(py, self.progress, Bar::Steps { from, n })?;
        let mut on_event = feed.on_event();
        let reports = self.with_trainer(py, &feed, |t| {
            let mut reports = Vec::new();
            for _ in 0..n {
                match t.step(&mut on_event)? {
                    Some(r) => reports.push(r),
                    None => break,
                }
                if t.is_done() {
                    t.finish(&mut on_event)?;
                }
            }
            // A Python loop calls again within microseconds: the workers wait for it awake
            // instead of each call beginning with wake-ups.
            convlm::tensor::threads::keep_awake(convlm::tensor::threads::MAX_IDLE_SPIN);
            Ok(reports)
        });
        feed.close(py)?;
        let records = PyList::empty(py);
        for r in reports? {
            let mut record = r.record;
            if let Some(v) = r.val_loss {
                record["val_loss"] = serde_json::json!(v);
            }
            records.append(to_py(py, &record)?)?;
        }
        Ok(records)
    }

    /// The loss, perplexity, bits per token and token count of the model as it is now, on all
    /// of `split` ("train", "val" or "test"); training is not affected.
    #[pyo3(signature = (split="val"))]
    fn evaluate<'py>(&self, py: Python<'py>, split: &str) -> PyResult<Bound<'py, PyDict>> {
        let split = parse_split(split)?;
        let report = self.with_trainer(py, &Feed::quiet(), |t| t.evaluate(split))?;
        report_dict(py, &report)
    }

    /// Saves a checkpoint of the run as it is now: a resume continues from this step exactly.
    fn save(&self, py: Python<'_>) -> PyResult<()> {
        self.with_trainer(py, &Feed::quiet(), |t| t.save())
    }

    /// Ends the trainer, unlocking the run folder (what was not saved is lost, as a stop
    /// would lose it: `save()` first to keep it).
    fn close(&self) -> PyResult<()> {
        let mut guard = self.inner.try_lock().map_err(|_| PyRuntimeError::new_err("the trainer is busy with a call from another thread"))?;
        guard.take();
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    /// The run being trained.
    #[getter]
    fn run(&self) -> Run {
        Run::at(self.path.clone())
    }

    /// Steps completed in all.
    #[getter]
    fn steps_done(&self) -> PyResult<u64> {
        self.read(|t| t.steps_done())
    }

    /// The steps the run takes in all (for a time-limited run, a bound until its clock ends it).
    #[getter]
    fn total_steps(&self) -> PyResult<u64> {
        self.read(|t| t.total_steps())
    }

    /// Whether the run has taken all its steps.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        self.read(|t| t.is_done())
    }

    fn __repr__(&self) -> String {
        format!("Trainer(out={:?})", self.path.display().to_string())
    }
}

impl Trainer {
    fn read<R>(&self, f: impl FnOnce(&convlm::run::Trainer) -> R) -> PyResult<R> {
        let guard = self.inner.try_lock().map_err(|_| PyRuntimeError::new_err("the trainer is busy with a call from another thread"))?;
        guard.as_ref().map(f).ok_or_else(|| PyRuntimeError::new_err(format!("the trainer of {} is closed", self.path.display())))
    }
}

/// "train", "val" or "test".
pub fn parse_split(split: &str) -> PyResult<Split> {
    serde_json::from_value(serde_json::Value::String(split.to_string())).map_err(|_| config_error("split", format!("`{split}`: expected train, val or test")))
}
