//! The state of a training run in memory ([`Session`]): made fresh for a new run, loaded
//! from the last checkpoint to resume one, and rebuilt by replay when an update diverged.
//!
//! In a data-parallel run every rank holds a session: rank 0 claims, locks and reads the run
//! folder and hands its config, tokenizer and checkpoint to the others ([`crate::run::ranks`]),
//! so the other ranks never touch the folder (nor need it: another machine may not see it).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cancel::CancelToken;
use crate::data::{Batch, Dataset, PrepareProgress, Split, Tokenizer};
use crate::dist::{check_batch_size, Group};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::optim::Optimizer;
use crate::run::checkpoint::{RunDir, TrainState, CHECKPOINT_FILE, TOKENIZER_FILE};
use crate::run::config::RunConfig;
use crate::run::events::{OnEvent, TrainEvent};
use crate::run::ownership::{RunLock, RunManifest};
use crate::run::prepare::{build_dataset, check_same_tokenizer};
use crate::run::ranks::{check_device, check_same_setup, from_root, on_root, open_data_in_turn, Ranks};
use crate::run::same_data::check_same_data;
use crate::run::step::{dropout_seed, StepOutcome, StepSettings};
use crate::tensor::Precision;

/// Offset mixed into the run seed for the batch RNG, so batches and init differ.
const BATCH_RNG_STREAM: u64 = 0x0062_6174_6368_6573;

/// What a resumed run may change: how long it trains and on how many threads. Everything
/// else comes from the run's own config.json.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    /// Train until this many steps in all (default: the total the run was started with).
    pub steps: Option<u64>,
    /// Or until this many passes over the training split in all.
    pub epochs: Option<f64>,
    /// Or for this many seconds of training in all (a new budget for a time-limited run,
    /// or a time limit for one that counted steps).
    pub time_limit: Option<f64>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Save a checkpoint every N steps besides every evaluation (0: only at evaluations);
    /// changes no result.
    pub checkpoint_every: Option<u64>,
    /// Continue on this device instead of the one the run used last (`None`: the same).
    pub device: Option<crate::tensor::Device>,
    /// Continue even though the data files changed since the run started.
    pub allow_data_change: bool,
}

/// Everything a run needs in memory.
pub(super) struct Session {
    pub config: RunConfig,
    pub tokenizer: Tokenizer,
    pub dataset: Dataset,
    pub model: Model,
    pub optimizer: Optimizer,
    /// Draws the training batches; its position is saved in every checkpoint.
    pub rng: ChaCha8Rng,
    pub state: TrainState,
    /// The step of the checkpoint in the run folder (loaded, or saved since): a divergence
    /// right after it has nothing newer to save, and keeps that file as it is.
    pub saved_step: Option<u64>,
    /// The run directory's lock, held while the session lives (by rank 0 only).
    _lock: Option<RunLock>,
    pub moved_aside: Option<std::path::PathBuf>,
}

/// A run's state before its first step.
struct Start {
    model: Model,
    optimizer: Optimizer,
    rng: ChaCha8Rng,
    state: TrainState,
}

/// The model, optimizer, batch RNG and progress of `config` at step 0.
fn start(config: &RunConfig, vocab_size: usize, total_steps: u64) -> Result<Start> {
    let model = Model::new(&config.model, vocab_size, config.seed)?;
    let optimizer = Optimizer::new(&config.optimizer, model.params())?;
    let rng = ChaCha8Rng::seed_from_u64(config.seed ^ BATCH_RNG_STREAM);
    let state = TrainState::start(total_steps, config.seed ^ BATCH_RNG_STREAM, config.train.time_limit);
    Ok(Start { model, optimizer, rng, state })
}

/// The batch RNG at the position a checkpoint recorded.
fn batch_rng(run: &RunDir, state: &TrainState) -> Result<ChaCha8Rng> {
    let mut rng = ChaCha8Rng::seed_from_u64(state.rng_seed);
    let pos: u128 = state.rng_word_pos.parse().map_err(|_| Error::bad_file(run.file(CHECKPOINT_FILE), "bad rng position"))?;
    rng.set_word_pos(pos);
    Ok(rng)
}

pub(super) use crate::run::config::MAX_STEPS;

/// Total optimizer steps of `epochs` passes over the training split (at least one).
fn epochs_to_steps(epochs: f64, dataset: &Dataset, batch_size: usize) -> Result<u64> {
    let steps = (epochs * dataset.num_examples(Split::Train) as f64 / batch_size as f64).ceil();
    if !(steps.is_finite() && steps <= MAX_STEPS as f64) {
        return Err(Error::config("epochs", format!("{epochs} epochs are {steps:.3e} steps of batch {batch_size}; at most {MAX_STEPS} steps")));
    }
    Ok((steps as u64).max(1))
}

/// The steps a run is asked for; a time-limited run is bounded by its clock instead.
fn total_steps(config: &RunConfig, dataset: &Dataset) -> Result<u64> {
    match (config.train.time_limit, config.train.epochs) {
        (Some(_), _) => Ok(MAX_STEPS),
        (None, Some(e)) => epochs_to_steps(e, dataset, config.train.batch_size),
        (None, None) => Ok(config.train.steps),
    }
}

/// Refuses a run whose model and batches would not fit in memory (before allocating them):
/// each rank holds the model and its share of the batch, in a machine's memory shared with
/// the other ranks on it.
fn check_memory(config: &RunConfig, vocab_size: usize, dataset: &Dataset, group: &Group) -> Result<()> {
    check_batch_size(config.train.batch_size, group.size())?;
    let rows = config.train.batch_size.div_ceil(group.size());
    let est = crate::run::memory::estimate(&config.model, vocab_size, rows, dataset.max_seq_len().max(1))?;
    let available = crate::run::memory::available().map(|a| a / group.local_size().max(1) as u64);
    group.agree(crate::run::memory::check_fits(&est, available), "checking memory", crate::dist::Wait::Step)
}

/// The events of a run, shareable with the corpus reader's thread.
type SharedEvents<'a, 'b> = std::sync::Mutex<&'a mut (dyn FnMut(TrainEvent<'_>) + Send + 'b)>;

/// Sizes this process's thread pool for a run asking for `threads` (split between the
/// ranks of one machine unless asked), warning when it oversubscribes the cores. Done before
/// the data is read, whose encoding runs on the pool: built there first, the pool would have
/// kept every core whatever the run asked for.
fn size_pool(group: &Group, threads: Option<usize>, events: &SharedEvents) {
    let threads = crate::run::ranks::threads_per_rank(group, threads);
    if let Some(warning) = crate::tensor::threads::oversubscription_warning(threads) {
        (events.lock().unwrap_or_else(|e| e.into_inner()))(TrainEvent::Warning(warning));
    }
    crate::tensor::threads::init_threads(threads);
}

/// Reports a preparation's progress as an event.
fn preparing(events: &SharedEvents, p: &PrepareProgress) {
    (events.lock().unwrap_or_else(|e| e.into_inner()))(TrainEvent::Preparing(*p));
}

/// The precision a new run computes in, recorded in its config.json: `auto` becomes bf16
/// where every rank's CPU has AVX512_BF16 (and the run is on the CPU), fp32 otherwise.
fn choose_precision(group: &Group, config: &RunConfig) -> Result<Precision> {
    let asked = config.train.precision;
    let chosen = asked.resolve(config.train.device.is_cpu());
    if asked != Precision::Auto || !group.is_distributed() {
        return Ok(chosen);
    }
    let some_rank_lacks_bf16 = group.any(chosen != Precision::Bf16, "choosing the precision")?;
    Ok(if some_rank_lacks_bf16 { Precision::Fp32 } else { Precision::Bf16 })
}

/// A new run of `config` in `run`; `cancel` stops the reading of its data.
pub(super) fn new_session(config: &RunConfig, run: &RunDir, force: bool, group: &Group, cancel: &CancelToken, on_event: OnEvent<'_>) -> Result<Session> {
    let events: SharedEvents = std::sync::Mutex::new(on_event);
    config.validate()?;
    let mut config = config.clone();
    config.train.precision = choose_precision(group, &config)?;
    check_device(group, config.train.device, config.train.precision)?;
    group.agree(config.train.precision.check_cpu(), "checking the CPU", crate::dist::Wait::Step)?;
    // Runs are read back from other folders (eval, resume): keep the data path absolute.
    let mut absolute = || -> Result<()> {
        for path in [&mut config.data.path, &mut config.data.tokenizer_file].into_iter().flatten() {
            *path = std::fs::canonicalize(&*path).map_err(|e| Error::io(&*path, e))?;
        }
        Ok(())
    };
    group.agree(absolute(), "finding the data", crate::dist::Wait::Step)?;
    size_pool(group, config.train.threads, &events);
    let data = open_data_in_turn(group, &config.data, None, |p| preparing(&events, p), cancel)?;
    check_same_data(group, &config.data, &data)?;
    let tokenizer = data.tokenizer.clone();
    let dataset = build_dataset(&config.data, &data, config.seed)?;
    let total_steps = total_steps(&config, &dataset)?;
    if config.train.time_limit.is_none() && config.schedule.warmup_steps > total_steps {
        return Err(Error::config("warmup", format!("{} warm-up steps are more than the run's {total_steps} steps", config.schedule.warmup_steps)));
    }
    check_memory(&config, tokenizer.vocab_size(), &dataset, group)?;
    let model = Model::new(&config.model, tokenizer.vocab_size(), config.seed)?;
    let optimizer = Optimizer::new(&config.optimizer, model.params())?;
    // Only now, with everything built, is the folder claimed and written (by rank 0).
    let claimed = on_root(group, "claiming the run folder", || {
        let (lock, mut manifest, moved_aside) = run.claim(force)?;
        run.save_setup(&config, &tokenizer)?;
        run.record_fingerprints(&mut manifest, &config, data.fingerprint.clone())?;
        Ok((lock, moved_aside))
    })?;
    check_same_setup(group, &config, &dataset, &model)?;
    let (lock, moved_aside) = claimed.map_or((None, None), |(l, m)| (Some(l), m));
    let rng = ChaCha8Rng::seed_from_u64(config.seed ^ BATCH_RNG_STREAM);
    let mut state = TrainState::start(total_steps, config.seed ^ BATCH_RNG_STREAM, config.train.time_limit);
    let tuning = root_tuning(group)?;
    crate::tensor::tune::install(tuning);
    state.tuning = Some(tuning);
    Ok(Session { config, tokenizer, dataset, model, optimizer, rng, state, saved_step: None, _lock: lock, moved_aside })
}

/// Rank 0's kernel choices for this CPU (measured once, cached), which every rank computes
/// with and the run records.
fn root_tuning(group: &Group) -> Result<crate::tensor::tune::Tuning> {
    let measured = group.is_root().then(|| {
        let tuning = crate::run::tuning::for_this_cpu();
        (tuning, serde_json::to_vec(&tuning).unwrap_or_default())
    });
    from_root(group, "rank 0's kernel choices", measured, |b| {
        serde_json::from_slice(b).map_err(|e| Error::distributed(format!("rank 0's kernel choices: {e}")))
    })
}

/// What rank 0 reads from a run folder it resumes.
struct Opened {
    lock: RunLock,
    manifest: Option<RunManifest>,
    config: (RunConfig, Vec<u8>),
    tokenizer: (Tokenizer, Vec<u8>),
}

/// The run in `run` at its last checkpoint; `cancel` stops the reading of its data.
pub(super) fn resume_session(run: &RunDir, opts: &ResumeOptions, group: &Group, cancel: &CancelToken, on_event: OnEvent<'_>) -> Result<Session> {
    let events: SharedEvents = std::sync::Mutex::new(on_event);
    let opened = on_root(group, "opening the run", || {
        let (lock, manifest) = run.open_for_resume()?;
        let config = run.load_config()?;
        run.remove_stale_temp_files()?;
        let tokenizer = run.load_tokenizer()?;
        let config_bytes = if group.is_distributed() { serde_json::to_vec(&config).map_err(|e| Error::config("config", e.to_string()))? } else { Vec::new() };
        let tokenizer_bytes = if group.is_distributed() { tokenizer.to_json()?.into_bytes() } else { Vec::new() };
        Ok(Opened { lock, manifest, config: (config, config_bytes), tokenizer: (tokenizer, tokenizer_bytes) })
    })?;
    let (lock, manifest, config, tokenizer) = match opened {
        Some(o) => (Some(o.lock), o.manifest, Some(o.config), Some(o.tokenizer)),
        None => (None, None, None, None),
    };
    let mut config = from_root(group, "rank 0's config.json", config, |b| {
        let c: RunConfig = serde_json::from_slice(b).map_err(|e| Error::distributed(format!("rank 0's config: {e}")))?;
        c.validate().map(|_| c)
    })?;
    group.agree(config.train.precision.check_cpu(), "checking the CPU", crate::dist::Wait::Step)?;
    let tokenizer = from_root(group, "rank 0's tokenizer.json", tokenizer, |b| Tokenizer::from_json(&String::from_utf8_lossy(b), &run.file(TOKENIZER_FILE)))?;
    if opts.threads.is_some() {
        config.train.threads = opts.threads;
    }
    if let Some(device) = opts.device {
        config.train.device = device;
    }
    check_device(group, config.train.device, config.train.precision)?;
    size_pool(group, config.train.threads, &events);
    let data = open_data_in_turn(group, &config.data, None, |p| preparing(&events, p), cancel)?;
    check_same_data(group, &config.data, &data)?;
    on_root(group, "checking the data", || {
        if let Some(m) = &manifest {
            if let Some(warning) = run.check_data(m, &data.fingerprint, opts.allow_data_change)? {
                (events.lock().unwrap_or_else(|e| e.into_inner()))(TrainEvent::Warning(warning));
            }
        }
        Ok(())
    })?;
    let dataset = build_dataset(&config.data, &data, config.seed)?;
    check_memory(&config, tokenizer.vocab_size(), &dataset, group)?;
    let mut model = Model::new(&config.model, tokenizer.vocab_size(), config.seed)?;
    let mut optimizer = Optimizer::new(&config.optimizer, model.params())?;
    let (mut state, saved_step) = match checkpoint_bytes(group, run)? {
        Some(bytes) => {
            let loaded = run.load_checkpoint_from(&bytes, &mut model, &mut optimizer, &config, &tokenizer);
            drop(bytes);
            let state = group.agree(loaded, "loading the checkpoint", crate::dist::Wait::Step)?;
            let step = state.step;
            (state, Some(step))
        }
        // A run stopped before its first checkpoint (a crash, SIGTERM) starts again from
        // step 0 with its recorded config, exactly as it first started; one that lost its
        // checkpoint is an error naming it.
        None => {
            on_root(group, "looking for the checkpoint", || if run.never_checkpointed() { Ok(()) } else { run.require(CHECKPOINT_FILE).map(|_| ()) })?;
            (TrainState::start(total_steps(&config, &dataset)?, config.seed ^ BATCH_RNG_STREAM, config.train.time_limit), None)
        }
    };
    // The kernels the run trained with: recorded in its checkpoint, measured as a new run's
    // are for a run never checkpointed, by CPU flags for runs from before they were recorded.
    let tuning = match (state.tuning, saved_step) {
        (Some(tuning), _) => tuning,
        (None, None) => root_tuning(group)?,
        (None, Some(_)) => crate::tensor::tune::Tuning::by_flags(),
    };
    crate::tensor::tune::install(tuning);
    state.tuning = Some(tuning);
    on_root(group, "checking the run's setup", || manifest.as_ref().map_or(Ok(()), |m| run.check_setup(m, &config)))?;
    group.agree(check_same_tokenizer(&tokenizer, &data), "checking the tokenizer", crate::dist::Wait::Step)?;
    on_root(group, "marking the run", || {
        if manifest.is_none() {
            // A run from before run markers, now that its files are known to fit together:
            // mark it with today's files (never before: a failed resume writes nothing).
            run.record_fingerprints(&mut RunManifest::new(), &config, data.fingerprint.clone())?;
        }
        Ok(())
    })?;
    // After the checks: config.json (and its fingerprint) keep the run's own setting.
    if let Some(every) = opts.checkpoint_every {
        config.train.checkpoint_every = every;
    }
    let asked = match (opts.steps, opts.epochs) {
        (Some(steps), _) if steps > MAX_STEPS => return Err(Error::config("steps", format!("{steps} is more than {MAX_STEPS} steps"))),
        (Some(steps), _) => Some(steps),
        (None, Some(epochs)) => Some(epochs_to_steps(epochs, &dataset, config.train.batch_size)?),
        (None, None) => None,
    };
    if let Some(total) = asked {
        if total < state.step {
            return Err(Error::config("steps", format!("the run is already at step {}; to train further, ask for more steps in all", state.step)));
        }
        (state.total_steps, state.time_limit_s) = (total, None);
    } else if let Some(limit) = opts.time_limit {
        // A new budget in all: the clock decides where the run ends, from this step on.
        if limit > state.train_seconds {
            (state.total_steps, state.time_limit_s) = (MAX_STEPS.max(state.step), Some(limit));
        } else {
            state.total_steps = state.step;
        }
    }
    let rng = batch_rng(run, &state)?;
    check_same_setup(group, &config, &dataset, &model)?;
    Ok(Session { config, tokenizer, dataset, model, optimizer, rng, state, saved_step, _lock: lock, moved_aside: None })
}

/// The bytes of the run's checkpoint on every rank, read by rank 0 (`None` when the run
/// has none yet).
fn checkpoint_bytes(group: &Group, run: &RunDir) -> Result<Option<Vec<u8>>> {
    let read = on_root(group, "reading the checkpoint", || if run.file(CHECKPOINT_FILE).is_file() { run.read_checkpoint().map(Some) } else { Ok(None) })?;
    if !group.is_distributed() {
        return Ok(read.flatten());
    }
    // A leading byte says whether there is a checkpoint.
    let framed = read.map(|r| match r {
        Some(mut b) => {
            b.insert(0, 1);
            b
        }
        None => vec![0],
    });
    let mut bytes = group.broadcast_bytes(framed, "sending the checkpoint")?;
    Ok((bytes.first() == Some(&1)).then(|| {
        bytes.remove(0);
        bytes
    }))
}

/// Saves the state after `step` steps when the update of step `step + 1` made the model
/// non-finite (the update ran in place, so the session's own model is lost): replays the
/// steps since the last checkpoint (or since the start) exactly as they ran — same batches,
/// same numbers, as a resume would — and saves a checkpoint there. Costs nothing until a
/// run diverges, instead of a copy of every parameter and moment at every step.
/// The batch (drawn with `rng`) and settings of the step a run takes after `step` steps, its
/// schedule as `state` records it. Training and the replay of [`save_last_good`] both take
/// their steps from here, so the replay takes the very same ones.
pub(super) fn next_step(cfg: &RunConfig, dataset: &Dataset, state: &TrainState, step: u64, rng: &mut ChaCha8Rng) -> Result<(Batch, StepSettings)> {
    let batch = dataset.sample_batch(Split::Train, cfg.train.batch_size, rng);
    dataset.check_batch(&batch)?;
    let lr = cfg.schedule.lr_at(cfg.optimizer.lr, step, state.schedule_total(step));
    Ok((batch, StepSettings { lr, clip_grad: cfg.train.clip_grad, dropout_seed: dropout_seed(cfg.seed, step), precision: cfg.train.precision }))
}

pub(super) fn save_last_good(s: &Session, run: &RunDir, step: u64, group: &Group, device: crate::tensor::Device) -> Result<()> {
    let cfg = &s.config;
    let (mut model, mut optimizer, mut rng, mut state) = match checkpoint_bytes(group, run)? {
        Some(bytes) => {
            let mut model = Model::new(&cfg.model, s.tokenizer.vocab_size(), cfg.seed)?;
            let mut optimizer = Optimizer::new(&cfg.optimizer, model.params())?;
            let state = run.load_checkpoint_from(&bytes, &mut model, &mut optimizer, cfg, &s.tokenizer)?;
            let rng = batch_rng(run, &state)?;
            (model, optimizer, rng, state)
        }
        None => {
            let Start { model, optimizer, rng, mut state } = start(cfg, s.tokenizer.vocab_size(), s.state.total_steps)?;
            state.tuning = s.state.tuning;
            (model, optimizer, rng, state)
        }
    };
    // The steps are replayed where they ran (a device's own rounding included).
    let mut ranks = Ranks::new(group, &model);
    ranks.use_device(device, cfg.train.precision, &model, &optimizer)?;
    while state.step < step {
        let (batch, settings) = next_step(cfg, &s.dataset, &s.state, state.step, &mut rng)?;
        match ranks.step(&mut model, &mut optimizer, &batch, settings)? {
            StepOutcome::Done(_) => state.step += 1,
            // The same steps ran without trouble the first time.
            StepOutcome::Diverged { what } => {
                return Err(Error::NonFinite { step: state.step + 1, what: format!("{what} (while replaying to save the last good state)") })
            }
        }
    }
    ranks.sync(&mut model, Some(&mut optimizer))?;
    state.rng_word_pos = rng.get_word_pos().to_string();
    (state.best_val_loss, state.best_step, state.total_steps) = (s.state.best_val_loss, s.state.best_step, s.state.total_steps);
    (state.time_limit_s, state.schedule_plan) = (s.state.time_limit_s, s.state.schedule_plan.clone());
    on_root(group, "saving the last good checkpoint", || run.save_checkpoint(&model, &optimizer, &state)).map(|_| ())
}
