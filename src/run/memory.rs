//! Will it fit? Estimates of the memory of training, scoring and sampling, made from the
//! model's plan before anything is allocated, so that `--batch-size 100000`,
//! `model.channels=100000000` or `sample -n 100000000000` is an error showing the estimate
//! and what the machine has, not an allocation abort. Every command that sizes something
//! from a flag (`train`, `eval`, `sample`, `summary`, `bench`) checks here first.

use crate::error::{Error, Result};
use crate::models::{Model, ModelConfig};

/// Bytes per f32.
const F32: u64 = 4;
/// Bytes kept per output channel and position of a layer during a training step: its value
/// on the tape, its gradient, and the kernels' temporaries (explicit columns, packed
/// panels), about eight values. Measured: a dilated CNN on names (310 channels over its
/// layers) took 154 KB more per sequence of 16 positions (31 bytes per channel-position)
/// going from batch 256 to 2048.
const BYTES_PER_CHANNEL_POSITION: u64 = 8 * F32;
/// The same without gradients (evaluation, summaries): the value on the tape and the kernels'
/// temporaries.
const INFERENCE_BYTES_PER_CHANNEL_POSITION: u64 = 4 * F32;

/// The estimated memory of a training run, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Parameter values.
    pub params: u64,
    /// Gradients and optimizer moments (Adam keeps two per parameter).
    pub optimizer: u64,
    /// The activations of one batch on the tape.
    pub activations: u64,
    /// Batch size and positions per sequence the activations were counted for.
    pub batch: usize,
    pub seq_len: usize,
}

impl MemoryEstimate {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.params.saturating_add(self.optimizer).saturating_add(self.activations)
    }
}

/// `a * b * …` saturating: an estimate only has to be large when the truth is.
fn mul(values: &[u64]) -> u64 {
    values.iter().fold(1u64, |p, &v| p.saturating_mul(v))
}

/// Estimates the memory of training `model` (vocabulary `vocab_size`) on batches of `batch`
/// sequences of `seq_len` positions (grids: cells). Errors only when the model itself is
/// ill-formed (its plan fails), never by allocating.
pub fn estimate(model: &ModelConfig, vocab_size: usize, batch: usize, seq_len: usize) -> Result<MemoryEstimate> {
    let plan = Model::plan(model, vocab_size)?;
    let params = mul(&[plan.params as u64, F32]);
    let positions = mul(&[batch as u64, seq_len as u64]);
    let channels = plan.layers.iter().fold(0u64, |sum, layer| sum.saturating_add(layer.out_channels as u64));
    Ok(MemoryEstimate { params, optimizer: mul(&[params, 3]), activations: mul(&[channels, positions, BYTES_PER_CHANNEL_POSITION]), batch, seq_len })
}

/// Estimates the memory of one forward pass without gradients (`eval`, `summary`) over
/// `batch` sequences of `seq_len` positions (grids: cells): the parameters and the
/// activations on the tape, in bytes. Errors only when the model itself is ill-formed.
pub fn estimate_inference(model: &ModelConfig, vocab_size: usize, batch: usize, seq_len: usize) -> Result<u64> {
    let plan = Model::plan(model, vocab_size)?;
    let channels = plan.layers.iter().fold(0u64, |sum, layer| sum.saturating_add(layer.out_channels as u64));
    let activations = mul(&[channels, batch as u64, seq_len as u64, INFERENCE_BYTES_PER_CHANNEL_POSITION]);
    Ok(mul(&[plan.params as u64, F32]).saturating_add(activations))
}

/// Estimates the memory of generating `count` samples of up to `tokens` tokens each (prompt
/// included) with `model`, all stepped together: per sample the tokens, two rows of logits
/// and every layer's generation state (its inputs over the model's context: the receptive
/// field, or the whole window of a long convolution), in bytes.
pub fn estimate_generation(model: &Model, count: usize, tokens: usize) -> u64 {
    let context = model.max_len().unwrap_or(model.receptive_field()).min(tokens.max(1)) as u64;
    let channels = model.layers().iter().fold(0u64, |sum, layer| sum.saturating_add(layer.out_channels as u64));
    let per_sample = (tokens as u64).saturating_add(mul(&[2, model.vocab_size() as u64])).saturating_add(mul(&[channels, context]));
    mul(&[count as u64, per_sample, F32]).saturating_add(mul(&[model.params().numel() as u64, F32]))
}

/// Errors with `what` (e.g. "sampling 20 texts of up to 256 tokens"), its estimate and what is
/// available when `bytes` would not fit; `advice` says which flags to lower.
pub fn check_bytes(what: &str, bytes: u64, advice: &str, available: Option<u64>) -> Result<()> {
    match available {
        Some(available) if bytes > available => Err(Error::Memory(format!("{what} needs about {} but {} are available; {advice}", gib(bytes), gib(available)))),
        _ => Ok(()),
    }
}

/// Memory this process can still take, in bytes: the kernel's `MemAvailable`, lowered to a
/// cgroup limit when one is set. `None` where it cannot be read (then nothing is refused).
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let mut bytes = kb.saturating_mul(1024);
    let cgroup = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Some(current)) = (cgroup("memory.max"), cgroup("memory.current")) {
        bytes = bytes.min(max.saturating_sub(current));
    }
    Some(bytes)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Errors with the estimate and what is available when the run would not fit.
pub fn check_fits(est: &MemoryEstimate, available: Option<u64>) -> Result<()> {
    let Some(available) = available else { return Ok(()) };
    if est.total() <= available {
        return Ok(());
    }
    Err(Error::Memory(format!(
        "training needs about {} (parameters {}, gradients and optimizer state {}, activations of a batch of {} × {} positions {}) but {} are available; lower --batch-size or the model's size",
        gib(est.total()),
        gib(est.params),
        gib(est.optimizer),
        est.batch,
        est.seq_len,
        gib(est.activations),
        gib(available)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dilated(channels: u64) -> ModelConfig {
        ModelConfig::from_value(serde_json::json!({"family": "dilated", "n_embd": 24, "channels": channels, "dilations": [1, 2, 4, 8]})).unwrap()
    }

    #[test]
    fn estimates_grow_with_the_batch_and_refuse_what_does_not_fit() {
        let small = estimate(&dilated(64), 30, 256, 16).unwrap();
        assert_eq!(small.params, 30_574 * 4);
        assert_eq!(small.activations, (24 + 4 * 64 + 30) * 256 * 16 * 32);
        let big = estimate(&dilated(64), 30, 100_000_000, 16).unwrap();
        let err = check_fits(&big, Some(8 << 30)).unwrap_err().to_string();
        assert!(err.starts_with("not enough memory: training needs about") && err.contains("100000000 × 16") && err.contains("8.0 GiB are available"), "{err}");
        assert!(check_fits(&small, Some(8 << 30)).is_ok());
        assert!(check_fits(&big, None).is_ok(), "unknown memory refuses nothing");
    }

    #[test]
    fn inference_and_generation_estimates_refuse_absurd_sizes() {
        let small = estimate_inference(&dilated(64), 30, 1, 32).unwrap();
        assert_eq!(small, 30_574 * 4 + (24 + 4 * 64 + 30) * 32 * 16);
        assert_eq!(estimate_inference(&dilated(64), 30, usize::MAX, 32).unwrap(), u64::MAX);
        let model = Model::new(&dilated(64), 30, 0).unwrap();
        let few = estimate_generation(&model, 20, 256);
        assert!(few < 1 << 20, "{few}");
        assert_eq!(estimate_generation(&model, usize::MAX, usize::MAX), u64::MAX);
        let err = check_bytes("sampling 9 texts", 10 << 30, "lower -n", Some(1 << 30)).unwrap_err().to_string();
        assert_eq!(err, "not enough memory: sampling 9 texts needs about 10.0 GiB but 1.0 GiB are available; lower -n");
        assert!(check_bytes("x", u64::MAX, "", None).is_ok());
    }

    #[test]
    fn absurd_sizes_are_errors_or_saturate_never_overflow() {
        let err = estimate(&dilated(u64::MAX), 30, 1, 1).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
        let huge = estimate(&dilated(100_000_000), 30, 32, 16).unwrap();
        assert!(check_fits(&huge, Some(24 << 30)).is_err());
        assert_eq!(estimate(&dilated(64), 30, usize::MAX, usize::MAX).unwrap().activations, u64::MAX);
    }
}
