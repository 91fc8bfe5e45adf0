//! The training loop: batches, forward, fused loss, backward, clipping, schedule, optimizer;
//! periodic validation with samples and best-model tracking; checkpoints for exact resume;
//! Ctrl-C and divergence handling.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::data::{Dataset, Split, Tokenizer};
use crate::error::{Error, Result};
use crate::generate::SamplingConfig;
use crate::models::Model;
use crate::optim::{clip_grad_norm, first_non_finite, grad_norm, Optimizer};
use crate::run::checkpoint::{RunDir, TrainState, BEST_FILE, METRICS_FILE};
use crate::run::config::RunConfig;
use crate::run::eval::{batch_shape, evaluate};
use crate::run::events::{CancelToken, TrainEvent};
use crate::run::metrics::MetricsLog;
use crate::run::ownership::{RunLock, RunManifest};
use crate::run::prepare::{build_dataset, build_tokenizer, load_corpus};
use crate::run::samples::{sample_texts, SampleRequest};
use crate::tensor::threads::{init_threads, on_pool, oversubscription_warning, with_workers_awake};
use crate::tensor::Graph;

/// Offset mixed into the run seed for the batch RNG, so batches and init differ.
const BATCH_RNG_STREAM: u64 = 0x0062_6174_6368_6573;

/// How to run the loop.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Draw samples after every evaluation and report them ([`TrainEvent::Samples`]).
    pub samples: bool,
    /// Cancelled: save a checkpoint at the next step and stop with `Error::Interrupted`.
    pub cancel: CancelToken,
    /// A new run whose folder already holds a run (or other files) moves them aside to
    /// `<dir>.old-N` instead of refusing.
    pub force: bool,
}

/// What a resumed run may change: how long it trains and on how many threads. Everything
/// else comes from the run's own config.json.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Train until this many steps in all (default: the total the run was started with).
    pub steps: Option<u64>,
    /// Or until this many passes over the training split in all.
    pub epochs: Option<f64>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Continue even though the data files changed since the run started.
    pub allow_data_change: bool,
}

/// Receives the events of a run (see [`TrainEvent`]).
pub type OnEvent<'a> = &'a mut (dyn FnMut(TrainEvent<'_>) + Send);

/// The outcome of a finished run.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Steps completed in all.
    pub steps: u64,
    /// Steps this call took (0 when a resumed run was already complete).
    pub steps_taken: u64,
    /// The training loss of the last step taken.
    pub final_train_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub params: usize,
    /// Where an earlier run (or other files) in the folder was moved by `force`.
    pub moved_aside: Option<std::path::PathBuf>,
}

/// Everything a run needs in memory.
struct Session {
    config: RunConfig,
    tokenizer: Tokenizer,
    dataset: Dataset,
    model: Model,
    optimizer: Optimizer,
    rng: ChaCha8Rng,
    state: TrainState,
    /// The run directory's lock, held while the session lives.
    _lock: RunLock,
    moved_aside: Option<std::path::PathBuf>,
}

/// Trains `config` into a new run in `run` (claiming the folder: see
/// [`RunDir::claim`]). Progress is reported to `on_event`.
pub fn train(config: &RunConfig, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let s = new_session(config, run, opts.force)?;
    run_session(s, run, opts, on_event)
}

/// Continues the run in `run` from its last checkpoint, exactly (same batches, same
/// numbers as an uninterrupted run), after checking that its config, tokenizer and data are
/// the ones it was started with.
pub fn resume(run: &RunDir, resume: &ResumeOptions, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let s = resume_session(run, resume, &mut *on_event)?;
    run_session(s, run, opts, on_event)
}

fn run_session(s: Session, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    if let Some(warning) = oversubscription_warning(s.config.train.threads) {
        on_event(TrainEvent::Warning(warning));
    }
    init_threads(s.config.train.threads);
    let result = on_pool(|| train_session(s, run, opts, &mut *on_event));
    on_event(TrainEvent::Finished);
    result
}

/// The training loop of an opened session (runs on a pool worker, see [`on_pool`]).
fn train_session(mut s: Session, run: &RunDir, opts: &TrainOptions, on_event: OnEvent<'_>) -> Result<TrainSummary> {
    let mut log = MetricsLog::open(&run.file(METRICS_FILE), s.state.step)?;
    on_event(TrainEvent::Started {
        family: s.config.model.family(),
        params: s.model.params().numel(),
        receptive_field: s.model.receptive_field(),
        vocab_size: s.tokenizer.vocab_size(),
        train_examples: s.dataset.num_examples(Split::Train),
        run_dir: run.root(),
        step: s.state.step,
        total_steps: s.state.total_steps,
    });
    let cfg = s.config.clone();
    let mut last_loss = None;
    let started = Instant::now();
    let start_step = s.state.step;
    let mut tokens = 0usize;
    while s.state.step < s.state.total_steps {
        // The batch RNG's position before this step's batch: what a checkpoint of the
        // `step` completed steps must record for an exact resume.
        let rng_pos = s.rng.get_word_pos();
        if opts.cancel.is_cancelled() {
            s.state.rng_word_pos = rng_pos.to_string();
            log.sync()?;
            run.save_checkpoint(&s.model, &s.optimizer, &s.state)?;
            return Err(Error::Interrupted { step: s.state.step });
        }
        let step = s.state.step;
        let batch = s.dataset.sample_batch(Split::Train, cfg.train.batch_size, &mut s.rng);
        tokens += batch.num_targets();
        // Forward and backward with the other workers kept awake between the step's ops.
        let model = &mut s.model;
        let loss = with_workers_awake(|| -> Result<f64> {
            model.params_mut().zero_grad();
            let mut g = Graph::new(true);
            let logits = model.forward(&mut g, &batch.inputs, &batch_shape(&batch))?;
            let loss_var = g.cross_entropy(logits, &batch.targets)?;
            let loss = g.value(loss_var).data()[0] as f64;
            if loss.is_finite() {
                g.backward(loss_var)?;
                model.params_mut().accumulate_grads(&g);
            }
            Ok(loss)
        })?;
        if !loss.is_finite() {
            return diverged(run, &s, &mut log, step, rng_pos, "the loss".into());
        }
        if let Some(name) = first_non_finite(s.model.params()) {
            return diverged(run, &s, &mut log, step, rng_pos, format!("the gradient of {name}"));
        }
        let norm = match cfg.train.clip_grad {
            Some(max) => clip_grad_norm(s.model.params_mut(), max) as f64,
            None => grad_norm(s.model.params()),
        };
        let lr = cfg.schedule.lr_at(cfg.optimizer.lr, step, s.state.total_steps);
        // An update can overflow even from finite gradients (a huge learning rate, L2 decay
        // of already huge weights): keep the pre-update state so a divergence can still save
        // the last good checkpoint (a copy of the values and optimizer moments per step).
        let before = (s.model.params().params().iter().map(|p| p.value.clone()).collect::<Vec<_>>(), s.optimizer.clone());
        s.optimizer.step(s.model.params_mut(), lr);
        if let Some(bad) = s.model.params().params().iter().find(|p| !p.value.all_finite()).map(|p| p.name.clone()) {
            let (values, optimizer) = before;
            for (p, v) in s.model.params_mut().params_mut().iter_mut().zip(values) {
                p.value = v;
            }
            s.optimizer = optimizer;
            return diverged(run, &s, &mut log, step, rng_pos, format!("parameter {bad} after the update"));
        }
        drop(before);
        s.state.step += 1;
        last_loss = Some(loss);
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let tok_s = tokens as f64 / elapsed;
        log.write(&json!({"step": s.state.step, "loss": loss, "lr": lr, "grad_norm": norm, "tokens_per_s": tok_s}))?;
        let steps_per_s = (s.state.step - start_step) as f64 / elapsed;
        on_event(TrainEvent::Step { step: s.state.step, total_steps: s.state.total_steps, loss, tokens_per_s: tok_s, steps_per_s });

        let at_eval = s.state.step.is_multiple_of(cfg.train.eval_every) || s.state.step == s.state.total_steps;
        if at_eval {
            evaluate_and_sample(&mut s, run, &mut log, opts.samples, &mut *on_event)?;
        }
        let at_checkpoint = cfg.train.checkpoint_every > 0 && s.state.step.is_multiple_of(cfg.train.checkpoint_every);
        if at_eval || at_checkpoint {
            s.state.rng_word_pos = s.rng.get_word_pos().to_string();
            // Records up to this step reach the disk before the checkpoint that covers them.
            log.sync()?;
            run.save_checkpoint(&s.model, &s.optimizer, &s.state)?;
        }
    }
    // The plot is a convenience: a failure to draw it must not fail a finished run.
    if let Err(e) = crate::run::plots::plot_run(run) {
        on_event(TrainEvent::Warning(format!("could not draw the loss plot: {e}")));
    }
    Ok(TrainSummary {
        steps: s.state.step,
        steps_taken: s.state.step - start_step,
        final_train_loss: last_loss,
        best_val_loss: s.state.best_val_loss,
        params: s.model.params().numel(),
        moved_aside: s.moved_aside,
    })
}

/// Stops a diverged run: keeps (or writes) the last good checkpoint, then errors naming the
/// step and what was not finite. `rng_pos` is the batch RNG's position before the failing
/// step drew its batch, so the saved checkpoint is exactly the state after `step` steps.
fn diverged(run: &RunDir, s: &Session, log: &mut MetricsLog, step: u64, rng_pos: u128, what: String) -> Result<TrainSummary> {
    // The parameters were last updated with finite gradients, so they are the last good
    // state: save it unless it already contains non-finite values.
    if s.model.params().params().iter().all(|p| p.value.all_finite()) {
        let mut state = s.state.clone();
        state.rng_word_pos = rng_pos.to_string();
        log.sync()?;
        run.save_checkpoint(&s.model, &s.optimizer, &state)?;
    }
    Err(Error::NonFinite { step: step + 1, what })
}

fn evaluate_and_sample(s: &mut Session, run: &RunDir, log: &mut MetricsLog, samples: bool, on_event: OnEvent<'_>) -> Result<()> {
    let cfg = &s.config;
    let val = evaluate(&mut s.model, &s.dataset, Split::Val, cfg.train.batch_size, cfg.train.eval_batches)?;
    log.write(&json!({"step": s.state.step, "val_loss": val.loss}))?;
    let best = s.state.best_val_loss.is_none_or(|b| val.loss < b);
    if best {
        s.state.best_val_loss = Some(val.loss);
        s.state.best_step = Some(s.state.step);
        run.save_weights(BEST_FILE, &s.model, s.state.step)?;
    }
    on_event(TrainEvent::Eval { step: s.state.step, val_loss: val.loss, best });
    if samples && (cfg.train.samples > 0 && s.model.can_step() || s.model.config().is_grid()) {
        let req = SampleRequest {
            count: cfg.train.samples,
            prompt: None,
            sampling: SamplingConfig { seed: cfg.seed.wrapping_add(s.state.step), max_tokens: 200, ..SamplingConfig::default() },
        };
        let drawn = sample_texts(&s.model, &s.tokenizer, s.dataset.kind(), s.dataset.grid_shape(), Some(&s.dataset), &req)?;
        on_event(TrainEvent::Samples(&drawn));
    }
    Ok(())
}

/// Longest run a step count may ask for (a year of the smallest model's steps): `--epochs
/// 1e12` is a mistake, not a plan.
const MAX_STEPS: u64 = 1_000_000_000;

/// Total optimizer steps of `epochs` passes over the training split (at least one).
fn epochs_to_steps(epochs: f64, dataset: &Dataset, batch_size: usize) -> Result<u64> {
    let steps = (epochs * dataset.num_examples(Split::Train) as f64 / batch_size as f64).ceil();
    if !(steps.is_finite() && steps <= MAX_STEPS as f64) {
        return Err(Error::config("epochs", format!("{epochs} epochs are {steps:.3e} steps of batch {batch_size}; at most {MAX_STEPS} steps")));
    }
    Ok((steps as u64).max(1))
}

fn total_steps(config: &RunConfig, dataset: &Dataset) -> Result<u64> {
    match config.train.epochs {
        Some(e) => epochs_to_steps(e, dataset, config.train.batch_size),
        None => Ok(config.train.steps),
    }
}

/// Refuses a run whose model and batches would not fit in memory (before allocating them).
fn check_memory(config: &RunConfig, vocab_size: usize, dataset: &Dataset) -> Result<()> {
    let est = crate::run::memory::estimate(&config.model, vocab_size, config.train.batch_size, dataset.max_seq_len().max(1))?;
    crate::run::memory::check_fits(&est, crate::run::memory::available())
}

fn new_session(config: &RunConfig, run: &RunDir, force: bool) -> Result<Session> {
    config.validate()?;
    let mut config = config.clone();
    // Runs are read back from other folders (eval, resume): keep the data path absolute.
    for path in [&mut config.data.path, &mut config.data.tokenizer_file].into_iter().flatten() {
        *path = std::fs::canonicalize(&*path).map_err(|e| Error::io(&*path, e))?;
    }
    let corpus = load_corpus(&config.data)?;
    let tokenizer = build_tokenizer(&config.data, &corpus.text)?;
    let dataset = build_dataset(&config.data, &corpus.text, &tokenizer, config.seed)?;
    let total_steps = total_steps(&config, &dataset)?;
    if config.schedule.warmup_steps > total_steps {
        return Err(Error::config("warmup", format!("{} warm-up steps are more than the run's {total_steps} steps", config.schedule.warmup_steps)));
    }
    check_memory(&config, tokenizer.vocab_size(), &dataset)?;
    let model = Model::new(&config.model, tokenizer.vocab_size(), config.seed)?;
    let optimizer = Optimizer::new(&config.optimizer, model.params())?;
    // Only now, with everything built, is the folder claimed and written.
    let (lock, mut manifest, moved_aside) = run.claim(force)?;
    run.save_setup(&config, &tokenizer)?;
    run.record_fingerprints(&mut manifest, &config, corpus.fingerprint)?;
    let rng = ChaCha8Rng::seed_from_u64(config.seed ^ BATCH_RNG_STREAM);
    let state = TrainState { step: 0, total_steps, rng_seed: config.seed ^ BATCH_RNG_STREAM, rng_word_pos: "0".into(), best_val_loss: None, best_step: None };
    Ok(Session { config, tokenizer, dataset, model, optimizer, rng, state, _lock: lock, moved_aside })
}

fn resume_session(run: &RunDir, opts: &ResumeOptions, on_event: OnEvent<'_>) -> Result<Session> {
    let (lock, mut manifest) = run.open_for_resume()?;
    let mut config = run.load_config()?;
    run.remove_stale_temp_files()?;
    if opts.threads.is_some() {
        config.train.threads = opts.threads;
    }
    let tokenizer = run.load_tokenizer()?;
    let corpus = load_corpus(&config.data)?;
    match &manifest {
        Some(m) => {
            if let Some(warning) = run.check_data(m, &corpus.fingerprint, opts.allow_data_change)? {
                on_event(TrainEvent::Warning(warning));
            }
        }
        None => {
            // A run from before run markers: mark it now, with today's files.
            let mut m = RunManifest::new();
            run.record_fingerprints(&mut m, &config, corpus.fingerprint.clone())?;
            manifest = Some(m);
        }
    }
    let dataset = build_dataset(&config.data, &corpus.text, &tokenizer, config.seed)?;
    check_memory(&config, tokenizer.vocab_size(), &dataset)?;
    let mut model = Model::new(&config.model, tokenizer.vocab_size(), config.seed)?;
    let mut optimizer = Optimizer::new(&config.optimizer, model.params())?;
    let mut state = run.load_checkpoint(&mut model, &mut optimizer, &config, &tokenizer)?;
    if let Some(m) = &manifest {
        run.check_setup(m, &config)?;
    }
    let asked = match (opts.steps, opts.epochs) {
        (Some(steps), _) => Some(steps),
        (None, Some(epochs)) => Some(epochs_to_steps(epochs, &dataset, config.train.batch_size)?),
        (None, None) => None,
    };
    if let Some(total) = asked {
        if total < state.step {
            return Err(Error::config("steps", format!("the run is already at step {}; to train further, ask for more steps in all", state.step)));
        }
        state.total_steps = total;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(state.rng_seed);
    let pos: u128 = state.rng_word_pos.parse().map_err(|_| Error::bad_file(run.file(crate::run::checkpoint::CHECKPOINT_FILE), "bad rng position"))?;
    rng.set_word_pos(pos);
    Ok(Session { config, tokenizer, dataset, model, optimizer, rng, state, _lock: lock, moved_aside: None })
}
