//! A run's part in data-parallel training ([`Ranks`]): which rank does what, and the steps
//! every rank takes together — opening the data in turn, agreeing that all ranks hold the
//! same setup, taking a training step on this rank's share of the global batch, and
//! handing rank 0's files (config, tokenizer, checkpoint) to the others, so that only rank 0
//! needs the run folder and no rank but 0 writes in it. With one process every helper
//! reduces to what a single run does.

use xxhash_rust::xxh3::Xxh3;

use crate::data::{Batch, Dataset, PrepareProgress, Split, Tokenizer};
use crate::dist::{shard, GradReducer, Group, Replica, Wait, BUCKET_BYTES};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::optim::Optimizer;
use crate::run::config::{DataConfig, RunConfig};
use crate::run::ownership::config_hash;
use crate::run::prepare::{open_data, RunData};
use crate::run::step::{dropout_seed, train_step_in, StepOutcome, StepSettings};
use crate::tensor::Device;

/// The ranks of a run, and this rank's gradient reducer (none in one process), or the GPU
/// the steps run on.
pub(super) struct Ranks {
    pub group: Group,
    reducer: Option<GradReducer>,
    #[cfg(feature = "gpu")]
    device: Option<crate::run::device::DeviceRun>,
}

impl Ranks {
    /// The ranks of `group` training `model`.
    pub fn new(group: &Group, model: &Model) -> Self {
        let reducer = group.is_distributed().then(|| GradReducer::new(model.params(), BUCKET_BYTES, crate::dist::overlap()));
        Ranks {
            group: group.clone(),
            reducer,
            #[cfg(feature = "gpu")]
            device: None,
        }
    }

    /// Moves the steps to `device` (the model and optimizer copied there); `Device::Cpu`
    /// keeps them on the CPU. A data-parallel run, and a run in bf16, stay on the CPU.
    pub fn use_device(&mut self, device: Device, precision: crate::tensor::Precision, model: &Model, optimizer: &Optimizer) -> Result<()> {
        check_device(&self.group, device, precision)?;
        if device.is_cpu() {
            return Ok(());
        }
        #[cfg(feature = "gpu")]
        {
            let gpu = crate::tensor::gpu::GpuDevice::open(device)?;
            self.device = Some(crate::run::device::DeviceRun::new(&gpu, model, optimizer)?);
            Ok(())
        }
        #[cfg(not(feature = "gpu"))]
        {
            let _ = (model, optimizer);
            Err(Error::device(format!("{device}: this build has no GPU support (built without the `gpu` feature)")))
        }
    }

    /// The adapter the steps run on, as (description, whether it emulates a GPU on the CPU).
    pub fn device_info(&self) -> Option<(String, bool)> {
        #[cfg(feature = "gpu")]
        if let Some(d) = &self.device {
            return Some((d.device().info().describe(), d.device().is_software()));
        }
        None
    }

    /// The device of the steps, for a second `Ranks` that replays them.
    pub fn device(&self) -> Device {
        #[cfg(feature = "gpu")]
        if let Some(d) = &self.device {
            return Device::GpuIndex(d.device().info().index);
        }
        Device::Cpu
    }

    /// Exchanges the model's weights with the optimizer's moving averages where the steps
    /// run (on a device, its buffers; nothing without averages): the run evaluates the
    /// average between two calls. Call [`Ranks::sync`] after it for the host to see them.
    pub fn swap_averages(&mut self, model: &mut Model, optimizer: &mut Optimizer) {
        #[cfg(feature = "gpu")]
        if let Some(d) = &mut self.device {
            return d.swap_averages();
        }
        optimizer.swap_averages(model.params_mut());
    }

    /// Brings the host's model (and optimizer, when given) up to date with the device the
    /// steps run on; nothing on the CPU.
    pub fn sync(&mut self, model: &mut Model, optimizer: Option<&mut Optimizer>) -> Result<()> {
        #[cfg(feature = "gpu")]
        if let Some(d) = &mut self.device {
            return d.sync(model, optimizer);
        }
        let _ = (model, optimizer);
        Ok(())
    }

    /// Evaluates `model` where the steps run: on the device, or across the ranks on the CPU.
    pub fn evaluate(&self, model: &mut Model, dataset: &Dataset, split: Split, batch_size: usize, max_batches: usize) -> Result<crate::run::EvalReport> {
        #[cfg(feature = "gpu")]
        if let Some(d) = &self.device {
            return d.evaluate(model, dataset, split, batch_size, max_batches);
        }
        crate::run::eval::evaluate_in(&self.group, model, dataset, split, batch_size, max_batches)
    }

    /// Takes one step on `batch`, the global batch: in one process on all of it, else on
    /// this rank's rows with the gradients summed over the ranks.
    pub fn step(&mut self, model: &mut Model, optimizer: &mut Optimizer, batch: &Batch, settings: StepSettings) -> Result<StepOutcome> {
        #[cfg(feature = "gpu")]
        if let Some(d) = &mut self.device {
            return d.step(model, optimizer, batch, settings);
        }
        let Some(reducer) = &mut self.reducer else { return train_step_in(model, optimizer, batch, settings, None) };
        let mine = shard(batch, self.group.rank(), self.group.size());
        // Each rank draws its own rows' dropout masks, from the step's seed mixed with the rank
        // (so with dropout a run depends on N, like a run with BatchNorm).
        let settings = StepSettings { dropout_seed: dropout_seed(settings.dropout_seed, self.group.rank() as u64), ..settings };
        let mut replica = Replica { group: &self.group, reducer, global_targets: batch.num_targets() };
        train_step_in(model, optimizer, &mine, settings, Some(&mut replica))
    }
}

/// Errors unless the steps of a run of `group` can run on `device`: the CPU always; a GPU
/// when this build has GPU support, the adapter opens, and the run is one process. Called
/// before a run folder is claimed, so a bad `--device` leaves nothing behind.
pub(super) fn check_device(group: &Group, device: Device, precision: crate::tensor::Precision) -> Result<()> {
    if device.is_cpu() {
        return Ok(());
    }
    if precision != crate::tensor::Precision::Fp32 {
        return Err(Error::config(
            "device",
            format!("{device}: --precision {precision} runs on the CPU only (AVX512_BF16); a GPU trains in fp32: pass --precision fp32, or --device cpu"),
        ));
    }
    if group.is_distributed() {
        return Err(Error::config("device", format!("{device}: data-parallel training runs on the CPU; train on a GPU in one process")));
    }
    #[cfg(feature = "gpu")]
    return crate::tensor::gpu::GpuDevice::open(device).map(|_| ());
    #[cfg(not(feature = "gpu"))]
    Err(Error::device(format!("{device}: this build has no GPU support (built without the `gpu` feature)")))
}

/// Runs `f` on rank 0 only; every rank learns whether it failed (see [`Group::agree`]).
pub(super) fn on_root<T>(group: &Group, what: &str, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let local = if group.is_root() { f().map(Some) } else { Ok(None) };
    group.agree(local, what, Wait::Step)
}

/// Rank 0's value on every rank: `root` (run on rank 0) gives it as bytes, `parse` reads it
/// back on the others.
pub(super) fn from_root<T>(group: &Group, what: &str, root: Option<(T, Vec<u8>)>, parse: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    if !group.is_distributed() {
        return root.map(|(v, _)| v).ok_or_else(|| Error::distributed(format!("{what}: nothing on rank 0")));
    }
    let (value, bytes) = match root {
        Some((v, b)) => (Some(v), Some(b)),
        None => (None, None),
    };
    let bytes = group.broadcast_bytes(bytes, what)?;
    let parsed = match value {
        Some(v) => Ok(v),
        None => parse(&bytes),
    };
    group.agree(parsed, what, Wait::Step)
}

/// Opens the run's data on every rank: rank 0 first (preparing a corpus from text into the
/// cache when needed, which may take long), then the others, which find it prepared when
/// they share rank 0's cache (and prepare their own otherwise).
pub(super) fn open_data_in_turn(
    group: &Group,
    cfg: &DataConfig,
    given: Option<&Tokenizer>,
    progress: impl Fn(&PrepareProgress) + Sync,
    cancel: &crate::cancel::CancelToken,
) -> Result<RunData> {
    let first = if group.is_root() { open_data(cfg, given, &progress, cancel).map(Some) } else { Ok(None) };
    let first = group.agree(first, "preparing the data", Wait::Unbounded)?;
    let data = match first {
        Some(d) => Ok(d),
        None => open_data(cfg, given, &progress, cancel),
    };
    group.agree(data, "opening the data", Wait::Unbounded)
}

/// Errors on every rank unless all ranks hold the same config, splits and starting weights
/// (another build, another seed…; the data itself is compared file by file as soon as it
/// opened, `same_data`).
pub(super) fn check_same_setup(group: &Group, config: &RunConfig, dataset: &Dataset, model: &Model) -> Result<()> {
    if !group.is_distributed() {
        return Ok(());
    }
    let fingerprint = || -> Result<u64> {
        let mut h = Xxh3::new();
        h.update(config_hash(config)?.as_bytes());
        for split in [Split::Train, Split::Val, Split::Test] {
            h.update(&(dataset.num_examples(split) as u64).to_le_bytes());
        }
        for p in model.params().params() {
            p.value.data().iter().for_each(|v| h.update(&v.to_le_bytes()));
        }
        Ok(h.digest())
    };
    let value = group.agree(fingerprint(), "fingerprinting the setup", Wait::Step)?;
    group.check_same(value, "the config, splits or starting weights")
}

/// Errors on every rank unless all ranks hold the same weights, bit for bit: every rank takes
/// the same update from the same summed gradient, so they can only differ when the
/// transport's sums do (checked before each checkpoint, so that none records a drifted
/// run).
pub(super) fn check_same_weights(group: &Group, model: &Model) -> Result<()> {
    if !group.is_distributed() {
        return Ok(());
    }
    let mut h = Xxh3::new();
    for p in model.params().params() {
        p.value.data().iter().for_each(|v| h.update(&v.to_le_bytes()));
    }
    group.check_same(h.digest(), "the weights after training (the ranks' gradient sums differed)")
}

/// Copies rank 0's BatchNorm running statistics to every rank (each rank's own follow its
/// shard; evaluation uses rank 0's, as a single process's would follow its whole batch).
pub(super) fn share_buffers(group: &Group, model: &mut Model) -> Result<()> {
    if !group.is_distributed() || model.buffers().entries.is_empty() {
        return Ok(());
    }
    let bytes = group.is_root().then(|| {
        let mut b = Vec::new();
        for (_, mean, var) in &model.buffers().entries {
            mean.data().iter().chain(var.data()).for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        }
        b
    });
    let bytes = group.broadcast_bytes(bytes, "sharing the BatchNorm statistics")?;
    let mut values = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    for (_, mean, var) in &mut model.buffers_mut().entries {
        for dst in mean.data_mut().iter_mut().chain(var.data_mut().iter_mut()) {
            *dst = values.next().ok_or_else(|| Error::distributed("rank 0's BatchNorm statistics are shorter than this rank's"))?;
        }
    }
    Ok(())
}

/// Worker threads per rank when neither `--threads` nor `CONVLM_THREADS` says: the cores
/// this rank may use, shared with the other ranks on its machine unless the launcher bound
/// each rank to cores of its own (then it sees only those).
pub(super) fn threads_per_rank(group: &Group, requested: Option<usize>) -> Option<usize> {
    let asked = requested.is_some() || std::env::var("CONVLM_THREADS").is_ok_and(|v| !v.trim().is_empty());
    if asked || group.local_size() <= 1 {
        return requested;
    }
    let cores = crate::tensor::threads::available_cores();
    let bound = online_cores().is_some_and(|online| cores < online);
    Some(if bound { cores } else { (cores / group.local_size()).max(1) })
}

/// Cores online in the machine, where the system says.
fn online_cores() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf only reads a system value.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        (n > 0).then_some(n as usize)
    }
    #[cfg(not(target_os = "linux"))]
    None
}
