//! Training for a wall-clock budget (`--time-limit 15m`): the run stops when one more step
//! and the final evaluation and checkpoint would no longer fit, and the learning-rate
//! schedule is laid over the steps the budget is projected to allow.
//!
//! The projection is revised as the run goes (every [`REVISE_EVERY`] steps, from the
//! measured seconds per step, evaluations and checkpoints included) and each revision is
//! recorded in the run's state as `(from step, total steps)`: the learning rate of a step
//! depends only on the step and that record, so a checkpoint, a resume and the replay after
//! a divergence give each step the learning rate it had. How many steps fit depends on the
//! machine's speed: a time-limited run is not reproducible step for step across runs (use
//! `--steps` for that).

use std::time::Instant;

use crate::error::{Error, Result};

/// Steps between two revisions of the projected total (the first comes after
/// [`FIRST_REVISION`] steps, once the caches are warm).
pub const REVISE_EVERY: u64 = 50;
/// The step of the first projection.
pub const FIRST_REVISION: u64 = 10;

/// Parses a duration: a number of seconds (`90`, `2.5`), or numbers with units `h`, `m`,
/// `s` in that order (`15m`, `1h30m`, `45s`, `1.5h`). Errors name the flag `time-limit`.
pub fn parse_duration(text: &str) -> Result<f64> {
    let bad = || Error::config("time-limit", format!("`{text}` is not a duration like 900, 15m, 1h30m or 45s"));
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return check_positive(secs, text);
    }
    let (mut total, mut number, mut units_seen) = (0.0, String::new(), String::new());
    for ch in t.chars() {
        match ch {
            '0'..='9' | '.' => number.push(ch),
            'h' | 'm' | 's' => {
                let scale = match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                // Units in order, each once: "1h30m", not "30m1h" or "1m1m".
                if number.is_empty() || units_seen.chars().any(|u| "hms".find(u) >= "hms".find(ch)) {
                    return Err(bad());
                }
                total += number.parse::<f64>().map_err(|_| bad())? * scale;
                number.clear();
                units_seen.push(ch);
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() || units_seen.is_empty() {
        return Err(bad());
    }
    check_positive(total, text)
}

fn check_positive(secs: f64, text: &str) -> Result<f64> {
    if secs.is_finite() && secs > 0.0 && secs <= 365.0 * 86_400.0 {
        Ok(secs)
    } else {
        Err(Error::config("time-limit", format!("must be a positive duration of at most a year, got `{text}`")))
    }
}

/// The clock of a time-limited run.
#[derive(Debug)]
pub struct TimeBudget {
    limit_s: f64,
    /// Training seconds of earlier sessions of the run (before a resume).
    used_before_s: f64,
    started: Instant,
    start_step: u64,
    /// The longest evaluation + checkpoint seen so far (the reserve kept for the last one).
    final_cost_s: Option<f64>,
}

impl TimeBudget {
    /// A budget of `limit_s` seconds in all, of which `used_before_s` are spent; the session
    /// starts at `step`.
    pub fn new(limit_s: f64, used_before_s: f64, step: u64) -> Self {
        TimeBudget { limit_s, used_before_s, started: Instant::now(), start_step: step, final_cost_s: None }
    }

    /// Training seconds spent in all.
    pub fn used_s(&self) -> f64 {
        self.used_before_s + self.started.elapsed().as_secs_f64()
    }

    /// Records how long an evaluation with its checkpoint took.
    pub fn record_final_cost(&mut self, seconds: f64) {
        self.final_cost_s = Some(self.final_cost_s.map_or(seconds, |c| c.max(seconds)));
    }

    /// Seconds per step in this session so far (evaluations and checkpoints included).
    fn per_step_s(&self, step: u64) -> Option<f64> {
        let steps = step.checked_sub(self.start_step).filter(|&n| n > 0)?;
        Some(self.started.elapsed().as_secs_f64() / steps as f64)
    }

    /// The reserve for the final evaluation and checkpoint: the longest one measured, else
    /// a guess of `eval_batches` half-steps (a forward is about a third of a step).
    fn reserve_s(&self, step: u64, eval_batches: usize) -> f64 {
        let guess = || self.per_step_s(step).unwrap_or(0.0) * (eval_batches.max(1) as f64) * 0.5;
        self.final_cost_s.unwrap_or_else(guess)
    }

    /// Whether the run must end after `step` steps: one more step and the final
    /// evaluation would pass the limit.
    pub fn must_stop(&self, step: u64, eval_batches: usize) -> bool {
        let per_step = self.per_step_s(step).unwrap_or(0.0);
        self.used_s() + per_step + self.reserve_s(step, eval_batches) >= self.limit_s
    }

    /// The total steps the budget allows at the speed so far (at least `step + 1`).
    pub fn projected_total(&self, step: u64, eval_batches: usize) -> u64 {
        let Some(per_step) = self.per_step_s(step) else { return step + 1 };
        let left = self.limit_s - self.used_s() - self.reserve_s(step, eval_batches);
        let more = (left / per_step.max(1e-9)).floor().clamp(1.0, 1e12) as u64;
        step.saturating_add(more)
    }
}

/// The schedule's total for `step`: the last revision made at or before it, else `total`.
pub fn schedule_total(plan: &[[u64; 2]], step: u64, total: u64) -> u64 {
    plan.iter().rev().find(|[from, _]| *from <= step).map_or(total, |[_, t]| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        for (text, secs) in [("900", 900.0), ("2.5", 2.5), ("15m", 900.0), ("1h30m", 5400.0), ("45s", 45.0), ("1.5h", 5400.0), ("1h2m3s", 3723.0)] {
            assert_eq!(parse_duration(text).unwrap(), secs, "{text}");
        }
        for text in ["", "m", "15x", "30m1h", "1m1m", "-5", "0", "0m", "nan", "inf", "10 m", "1e9h"] {
            let err = parse_duration(text).unwrap_err().to_string();
            assert!(err.contains("time-limit"), "{text}: {err}");
        }
    }

    #[test]
    fn the_plan_gives_each_step_the_revision_in_force() {
        let plan = [[10, 500], [60, 480], [110, 490]];
        assert_eq!(schedule_total(&plan, 0, 1_000_000), 1_000_000);
        assert_eq!(schedule_total(&plan, 9, 1_000_000), 1_000_000);
        assert_eq!(schedule_total(&plan, 10, 1_000_000), 500);
        assert_eq!(schedule_total(&plan, 59, 1_000_000), 500);
        assert_eq!(schedule_total(&plan, 60, 1_000_000), 480);
        assert_eq!(schedule_total(&plan, 5000, 1_000_000), 490);
    }

    #[test]
    fn a_spent_budget_stops_and_projects_no_further() {
        let budget = TimeBudget::new(1.0, 5.0, 0);
        assert!(budget.must_stop(3, 10));
        assert_eq!(budget.projected_total(3, 10), 4);
        let fresh = TimeBudget::new(3600.0, 0.0, 0);
        assert!(!fresh.must_stop(0, 10));
        assert_eq!(fresh.projected_total(0, 10), 1, "no speed measured yet");
    }
}
