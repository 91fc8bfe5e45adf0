//! A per-op time profile of the tape, on when `CONVLM_PROFILE=1`: each recorded op is
//! charged the wall time since the op before it was recorded (its forward kernel, and the
//! model's glue between the two), and its backward rule the time it takes. `convlm bench`
//! prints the table to stderr at the end. Off, it costs one cached flag test per op.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Whether `CONVLM_PROFILE=1` (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("CONVLM_PROFILE").is_ok_and(|v| v == "1"))
}

#[derive(Default, Clone, Copy)]
struct Entry {
    calls: u64,
    forward: Duration,
    backward: Duration,
}

static TABLE: Mutex<Option<HashMap<&'static str, Entry>>> = Mutex::new(None);

/// Charges `op` (a backward rule's type name) `forward` and/or `backward` time.
pub(crate) fn charge(op: &'static str, forward: Duration, backward: Duration) {
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let e = table.get_or_insert_with(HashMap::new).entry(op).or_default();
    e.calls += u64::from(!forward.is_zero());
    e.forward += forward;
    e.backward += backward;
}

/// The profile so far, most expensive op first, and clears it: op, forward calls, forward
/// and backward milliseconds, share of the total.
pub fn take_report() -> String {
    let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
    let mut rows: Vec<(&'static str, Entry)> = table.into_iter().collect();
    let total: f64 = rows.iter().map(|(_, e)| (e.forward + e.backward).as_secs_f64()).sum::<f64>().max(1e-12);
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.forward + r.1.backward));
    let mut out = format!("{:<28} {:>8} {:>12} {:>12} {:>7}\n", "op (backward rule)", "calls", "forward ms", "backward ms", "share");
    for (op, e) in rows {
        let short = op.rsplit("::").next().unwrap_or(op);
        let share = 100.0 * (e.forward + e.backward).as_secs_f64() / total;
        out += &format!("{short:<28} {:>8} {:>12.2} {:>12.2} {share:>6.1}%\n", e.calls, e.forward.as_secs_f64() * 1e3, e.backward.as_secs_f64() * 1e3);
    }
    out += &format!("{:<28} {:>8} {:>12} {:>12.2}\n", "total on the tape", "", "", total * 1e3);
    out
}
