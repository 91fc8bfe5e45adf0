//! Learning-rate schedules: constant, step decay, one-cycle and cosine, with linear warm-up.

use super::config::torch_scalar;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The shape of the learning rate over training. Serialized with a `schedule` tag:
/// `{"schedule": "cosine", "min_lr": 1e-5}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "schedule", rename_all = "lowercase")]
pub enum Schedule {
    /// The base learning rate throughout.
    #[default]
    Constant,
    /// `torch.optim.lr_scheduler.StepLR`: multiply by `gamma` every `step_size` steps
    /// (counted from the end of warm-up).
    Step {
        /// Steps between decays (> 0).
        step_size: u64,
        /// Factor applied at each decay (default 0.1).
        #[serde(default = "default_gamma")]
        gamma: f32,
    },
    /// `torch.optim.lr_scheduler.OneCycleLR` with `anneal_strategy='cos'`,
    /// `three_phase=False`, the base learning rate as `max_lr`, and no momentum cycling.
    OneCycle {
        /// Fraction of the steps spent rising to the peak (default 0.3).
        #[serde(default = "default_pct_start")]
        pct_start: f32,
        /// Initial lr = max_lr / div_factor (default 25).
        #[serde(default = "default_div_factor")]
        div_factor: f32,
        /// Final lr = initial lr / final_div_factor (default 1e4).
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f32,
    },
    /// Cosine decay from the base learning rate (after warm-up) to `min_lr` at the last step.
    Cosine {
        /// The learning rate reached at `total_steps` (default 0).
        #[serde(default)]
        min_lr: f32,
    },
}

fn default_gamma() -> f32 {
    0.1
}
fn default_pct_start() -> f32 {
    0.3
}
fn default_div_factor() -> f32 {
    25.0
}
fn default_final_div_factor() -> f32 {
    1e4
}

/// A schedule plus a linear warm-up. Serialized flat:
/// `{"schedule": "step", "step_size": 1000, "gamma": 0.5, "warmup_steps": 100}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// The schedule after warm-up.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0 (constant, step and cosine; must be 0 for one-cycle,
    /// which has its own warm-up phase).
    #[serde(default)]
    pub warmup_steps: u64,
}

impl ScheduleConfig {
    /// Checks the settings; errors name the setting as its flag.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(field, format!("must be a positive finite number, got {v}")))
            }
        };
        match &self.schedule {
            Schedule::Constant => {}
            Schedule::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return Err(Error::config("step-size", "must be at least 1"));
                }
                positive("gamma", *gamma)?;
            }
            Schedule::OneCycle { pct_start, div_factor, final_div_factor } => {
                if !(pct_start.is_finite() && *pct_start > 0.0 && *pct_start < 1.0) {
                    return Err(Error::config("pct-start", format!("must be in (0, 1), got {pct_start}")));
                }
                positive("div-factor", *div_factor)?;
                positive("final-div-factor", *final_div_factor)?;
                if self.warmup_steps != 0 {
                    return Err(Error::config("warmup-steps", "onecycle has its own warm-up phase (pct-start); set warmup-steps to 0"));
                }
            }
            Schedule::Cosine { min_lr } => {
                if !(min_lr.is_finite() && *min_lr >= 0.0) {
                    return Err(Error::config("min-lr", format!("must be a non-negative finite number, got {min_lr}")));
                }
            }
        }
        Ok(())
    }

    /// The learning rate for the update at 0-based `step` of a run of `total_steps` updates.
    ///
    /// - Warm-up (not one-cycle): `base_lr * step / warmup_steps` for `step < warmup_steps`
    ///   (so 0 at step 0 and `base_lr` at `step == warmup_steps`).
    /// - Constant: `base_lr`.
    /// - Step: `base_lr * gamma^((step - warmup) / step_size)` (integer division).
    /// - Cosine: `min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2` with
    ///   `progress = (step - warmup) / (total_steps - warmup)` clamped to [0, 1], so the
    ///   rate reaches `min_lr` at `step == total_steps` (as `CosineAnnealingLR` with
    ///   `T_max = total_steps`).
    /// - One-cycle: exactly `OneCycleLR.get_lr()` with `last_epoch = step`: from
    ///   `base_lr / div_factor` at step 0, up to `base_lr` at step `pct_start * total - 1`,
    ///   down to `base_lr / (div_factor * final_div_factor)` at step `total - 1`; steps past
    ///   the end keep the final value.
    ///
    /// Computed in f64 from the decimal values of the f32 settings, as Python would.
    pub fn lr_at(&self, base_lr: f32, step: u64, total_steps: u64) -> f32 {
        let base = torch_scalar(base_lr);
        let s = step as f64;
        if let Schedule::OneCycle { pct_start, div_factor, final_div_factor } = &self.schedule {
            let pct = torch_scalar(*pct_start);
            let div = torch_scalar(*div_factor);
            let final_div = torch_scalar(*final_div_factor);
            return one_cycle(base, s.min(total_steps as f64), total_steps as f64, pct, div, final_div) as f32;
        }
        let warmup = self.warmup_steps;
        if step < warmup {
            return (base * s / warmup as f64) as f32;
        }
        let since = step - warmup;
        let lr = match &self.schedule {
            Schedule::Constant => return base_lr,
            Schedule::Step { step_size, gamma } => {
                let k = since / (*step_size).max(1);
                base * torch_scalar(*gamma).powf(k as f64)
            }
            Schedule::Cosine { min_lr } => {
                let min = torch_scalar(*min_lr);
                let span = total_steps.saturating_sub(warmup);
                let progress = if span == 0 { 1.0 } else { (since as f64 / span as f64).min(1.0) };
                min + (base - min) * (1.0 + (PI * progress).cos()) / 2.0
            }
            Schedule::OneCycle { .. } => base,
        };
        lr as f32
    }
}

/// `OneCycleLR.get_lr()` (two phases, cosine annealing) at `step`.
fn one_cycle(max_lr: f64, step: f64, total: f64, pct_start: f64, div: f64, final_div: f64) -> f64 {
    let initial = max_lr / div;
    let min_lr = initial / final_div;
    let phases = [(pct_start * total - 1.0, initial, max_lr), (total - 1.0, max_lr, min_lr)];
    let mut start_step = 0.0;
    for (i, &(end_step, start_lr, end_lr)) in phases.iter().enumerate() {
        if step <= end_step || i == phases.len() - 1 {
            let span = end_step - start_step;
            // A degenerate phase (very short runs) would divide by zero in PyTorch; treat
            // it as already finished.
            let pct = if span > 0.0 { ((step - start_step) / span).min(1.0) } else { 1.0 };
            return anneal_cos(start_lr, end_lr, pct);
        }
        start_step = end_step;
    }
    min_lr
}

/// `OneCycleLR._annealing_cos`.
fn anneal_cos(start: f64, end: f64, pct: f64) -> f64 {
    let cos_out = (PI * pct).cos() + 1.0;
    end + (start - end) / 2.0 * cos_out
}
