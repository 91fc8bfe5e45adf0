//! `convlm selftest --device gpu`: every GPU kernel against the CPU engine on small random
//! shapes — each op's forward values and the gradients of every input, the optimizers'
//! updates and the gradient norm, and one training step of every registered family — as a
//! table. Needs nothing but the binary and an adapter; a user with a new GPU runs it first.
//!
//! Errors are measured as `max |gpu − cpu| / max |cpu|` over a tensor (the largest error
//! relative to the tensor's scale: a gradient's tiny entries carry no more rounding than
//! its large ones). The tolerance is 1e-4 unless a case says why it needs more.

mod families;
mod harness;
mod ops;
mod optim;

use crate::error::Result;
use crate::tensor::gpu::GpuDevice;

/// One comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The op or case, with its shapes.
    pub case: String,
    /// `forward`, `backward`, `update`, …
    pub pass: &'static str,
    /// Largest error relative to the tensor's scale (see the module docs).
    pub error: f64,
    pub tolerance: f64,
}

impl Check {
    /// Whether the error is within the tolerance (a NaN error is not).
    pub fn ok(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// Runs every check on `device`.
pub fn run(device: &GpuDevice) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    ops::run(device, &mut out)?;
    optim::run(device, &mut out)?;
    families::run(device, &mut out)?;
    Ok(out)
}

/// The checks as an aligned text table, failures marked.
pub fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.case.len()).max().unwrap_or(4).max(4);
    let mut s = format!("{:<width$}  {:<9}  {:>9}  {:>9}  result\n", "case", "pass", "error", "tolerance");
    for c in checks {
        let verdict = if c.ok() { "ok" } else { "MISMATCH" };
        s.push_str(&format!("{:<width$}  {:<9}  {:>9.2e}  {:>9.0e}  {verdict}\n", c.case, c.pass, c.error, c.tolerance));
    }
    s
}
