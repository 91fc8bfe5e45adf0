//! Optimizer settings: which algorithm and its hyperparameters, with validation.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The optimization algorithm, matching `torch.optim.{SGD, Adam, AdamW}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with optional (heavy-ball) momentum and L2 weight decay.
    Sgd,
    /// Adam with L2 weight decay added to the gradient.
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    AdamW,
}

/// Optimizer hyperparameters. Missing JSON fields take the [`Default`] values
/// (AdamW, lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, momentum 0, no weight
/// average).
///
/// Weight decay, for every kind, applies only to parameters whose
/// [`Param::decay`](crate::nn::Param::decay) is true (the reference `adamw_groups` rule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Algorithm.
    pub kind: OptimizerKind,
    /// Base learning rate (the schedule scales it per step).
    pub lr: f32,
    /// SGD momentum factor (dampening 0, not Nesterov); 0 disables momentum. Unused by Adam(W).
    pub momentum: f32,
    /// Adam(W) coefficients for the running averages of the gradient and its square.
    pub betas: (f32, f32),
    /// Adam(W) term added to the denominator for numerical stability.
    pub eps: f32,
    /// Weight decay: L2 (added to the gradient) for SGD and Adam, decoupled for AdamW.
    pub weight_decay: f32,
    /// Decay of an exponential moving average of the weights (0: none, the default), as
    /// `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn(decay)`, warmed up
    /// as TensorFlow's `ExponentialMovingAverage(num_updates=…)`: update `t` (from 0) uses
    /// `min(decay, (1 + t) / (10 + t))`. A run evaluates, samples and exports the average;
    /// the optimizer steps the live weights.
    #[serde(skip_serializing_if = "is_zero")]
    pub ema_decay: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { kind: OptimizerKind::AdamW, lr: 1e-3, momentum: 0.0, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01, ema_decay: 0.0 }
    }
}

impl OptimizerConfig {
    /// Checks every hyperparameter; errors name the offending setting as its flag
    /// (`lr`, `momentum`, `betas`, `eps`, `weight-decay`, `ema-decay`).
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("lr", format!("must be a positive finite number, got {}", self.lr)));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::config("momentum", format!("must be in [0, 1), got {}", self.momentum)));
        }
        let (b1, b2) = self.betas;
        for (i, b) in [(1, b1), (2, b2)] {
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                return Err(Error::config("betas", format!("beta{i} must be in [0, 1), got {b}")));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::config("eps", format!("must be a non-negative finite number, got {}", self.eps)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config("weight-decay", format!("must be a non-negative finite number, got {}", self.weight_decay)));
        }
        if !(self.ema_decay.is_finite() && (0.0..1.0).contains(&self.ema_decay)) {
            return Err(Error::config("ema-decay", format!("must be in [0, 1) (0: no average), got {}", self.ema_decay)));
        }
        Ok(())
    }

    /// Whether the optimizer keeps an average of the weights.
    pub fn averages(&self) -> bool {
        self.ema_decay > 0.0
    }

    /// The `lerp` weight (`1 - decay`) of average update number `t` (counted from 0):
    /// TensorFlow's warm-up `min(decay, (1 + t) / (10 + t))`, in f64 and rounded once.
    pub(crate) fn average_weight(&self, t: u64) -> f32 {
        let t = t as f64;
        let decay = torch_scalar(self.ema_decay).min((1.0 + t) / (10.0 + t));
        (1.0 - decay) as f32
    }
}

/// The f64 that PyTorch would hold for a hyperparameter stored here as f32.
///
/// Python keeps hyperparameters as doubles (`0.9`, `1e-2`), and PyTorch does its scalar
/// arithmetic (`1 - beta1`, `lr / (1 - beta1^t)`, `1 - lr * wd`) in double before rounding
/// to f32. Widening our f32 directly would give `0.8999999761…` instead of `0.9` and change
/// those results in the last bit, so the shortest decimal that round-trips the f32 (what the
/// user typed) is parsed as f64 instead.
pub(crate) fn torch_scalar(x: f32) -> f64 {
    x.to_string().parse::<f64>().unwrap_or(x as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_scalar_recovers_decimal() {
        assert_eq!(torch_scalar(0.9), 0.9f64);
        assert_eq!(torch_scalar(1e-2), 0.01f64);
        assert_eq!(torch_scalar(0.999), 0.999f64);
        assert_eq!(torch_scalar(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn the_average_warms_up_then_holds_its_decay() {
        let cfg = OptimizerConfig { ema_decay: 0.999, ..OptimizerConfig::default() };
        assert!(cfg.averages() && !OptimizerConfig::default().averages());
        // Update 0 keeps a tenth of the start, update 8 a half; from (1+t)/(10+t) > 0.999 on,
        // the configured decay.
        assert_eq!(cfg.average_weight(0), 0.9);
        assert_eq!(cfg.average_weight(8), 0.5);
        assert_eq!(cfg.average_weight(20_000), (1.0 - 0.999f64) as f32);
        for bad in [1.0, -0.1, f32::NAN] {
            let e = OptimizerConfig { ema_decay: bad, ..OptimizerConfig::default() }.validate().unwrap_err().to_string();
            assert!(e.contains("ema-decay"), "{e}");
        }
    }
}
