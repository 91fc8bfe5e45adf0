//! Loss curves from metrics.jsonl records: raw and smoothed training loss, validation loss.

use std::fmt::Write;

use serde_json::Value;

use super::svg::{close, legend, nice_ticks, Frame, BLUE, RED};
use crate::error::{Error, Result};

/// Message of the error for a metrics log with nothing to plot yet.
pub const NO_RECORDS: &str = "no training records yet";

/// `(step, value)` of every record holding a finite number under `key` (and a step), sorted
/// by step (stable, so a log is drawn in its own order within a step).
pub fn series(records: &[Value], key: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> =
        records.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?))).filter(|(s, v)| s.is_finite() && v.is_finite()).collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Smoothing factor of the exponential moving average for `n` points: a twentieth of the
/// curve's length in memory (`1 - 20/n`), so the smoothed curve lags little, between 0 (no
/// smoothing, 20 points or fewer) and 0.98 (50 points of memory).
pub fn ema_beta(n: usize) -> f64 {
    (1.0 - 20.0 / n.max(1) as f64).clamp(0.0, 0.98)
}

/// Bias-corrected exponential moving average (as Adam's moments, and TensorBoard's
/// smoothing): `m_t = β m_{t-1} + (1-β) x_t`, reported as `m_t / (1 - β^t)` so the curve
/// starts at the first value instead of at zero.
pub fn ema(values: &[f64], beta: f64) -> Vec<f64> {
    let mut m = 0.0;
    let mut correction = 1.0;
    values
        .iter()
        .map(|&x| {
            m = beta * m + (1.0 - beta) * x;
            correction *= beta;
            if correction < 1.0 {
                m / (1.0 - correction)
            } else {
                x
            }
        })
        .collect()
}

/// The `points` attribute of a polyline through `pts` in data coordinates.
fn polyline_points(frame: &Frame, pts: impl Iterator<Item = (f64, f64)>) -> String {
    let mut s = String::new();
    for (x, y) in pts {
        let _ = write!(s, "{:.1},{:.1} ", frame.px(x), frame.py(y));
    }
    s.trim_end().to_string()
}

/// Loss curves as an SVG document: raw training loss (thin, light), its smoothed EMA (bold)
/// and the validation loss (line with markers), step on x, loss in nats on y with nice ticks,
/// axis labels, a legend and `title`. Each series is one `<polyline>`.
///
/// Records are those of metrics.jsonl: training `{"step", "loss", …}` and validation
/// `{"step", "val_loss"}`; other records and null (non-finite) values are skipped. With no
/// training or validation record at all the error is [`Error::Data`] ([`NO_RECORDS`]).
pub fn loss_curves_svg(records: &[Value], title: &str) -> Result<String> {
    let train = series(records, "loss");
    let val = series(records, "val_loss");
    if train.is_empty() && val.is_empty() {
        return Err(Error::Data(NO_RECORDS.to_string()));
    }
    let smooth = ema(&train.iter().map(|p| p.1).collect::<Vec<_>>(), ema_beta(train.len()));
    let all = train.iter().chain(&val);
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        (x_lo, x_hi, y_lo, y_hi) = (x_lo.min(x), x_hi.max(x), y_lo.min(y), y_hi.max(y));
    }
    let frame = Frame {
        width: 900.0,
        height: 540.0,
        left: 72.0,
        top: 40.0,
        right: 880.0,
        bottom: 480.0,
        x: nice_ticks(x_lo.min(0.0), x_hi, 8),
        y: nice_ticks(y_lo, y_hi, 7),
    };
    let mut s = frame.begin(title, "step", "loss (nats)");
    let mut rows = Vec::new();
    if !train.is_empty() {
        let _ = writeln!(
            s,
            r#"<polyline class="train-raw" fill="none" stroke="{BLUE}" stroke-opacity="0.3" stroke-width="1" stroke-linejoin="round" points="{}"/>"#,
            polyline_points(&frame, train.iter().copied())
        );
        let _ = writeln!(
            s,
            r#"<polyline class="train-smooth" fill="none" stroke="{BLUE}" stroke-width="2.5" stroke-linejoin="round" points="{}"/>"#,
            polyline_points(&frame, train.iter().zip(&smooth).map(|(p, &m)| (p.0, m)))
        );
        let last = smooth.last().copied().unwrap_or(f64::NAN);
        rows.push((format!(r#"<line x1="0" y1="0" x2="24" y2="0" stroke="{BLUE}" stroke-opacity="0.3" stroke-width="1"/>"#), "train loss".to_string()));
        rows.push((format!(r#"<line x1="0" y1="0" x2="24" y2="0" stroke="{BLUE}" stroke-width="2.5"/>"#), format!("train loss, smoothed (last {last:.4})")));
    }
    if !val.is_empty() {
        let _ = writeln!(
            s,
            r#"<polyline class="validation" fill="none" stroke="{RED}" stroke-width="1.5" stroke-linejoin="round" points="{}"/>"#,
            polyline_points(&frame, val.iter().copied())
        );
        let _ = write!(s, r#"<g fill="{RED}">"#);
        for &(x, y) in &val {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3"/>"#, frame.px(x), frame.py(y));
        }
        s.push_str("</g>\n");
        let best = val.iter().copied().fold((f64::NAN, f64::INFINITY), |b, p| if p.1 < b.1 { p } else { b });
        rows.push((
            format!(r#"<line x1="0" y1="0" x2="24" y2="0" stroke="{RED}" stroke-width="1.5"/><circle cx="12" cy="0" r="3" fill="{RED}"/>"#),
            format!("validation loss (best {:.4} at step {})", best.1, best.0),
        ));
    }
    s.push_str(&legend(&frame, &rows));
    Ok(close(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_ema_starts_at_first_value_and_tracks_constant() {
        assert!(ema(&[3.0; 50], 0.9).iter().all(|m| (m - 3.0).abs() < 1e-12));
        let e = ema(&[1.0, 0.0], 0.5);
        assert!((e[0] - 1.0).abs() < 1e-12 && (e[1] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ema(&[2.0, 5.0], 0.0), vec![2.0, 5.0]);
        assert_eq!(ema_beta(5), 0.0);
        assert!((ema_beta(100) - 0.8).abs() < 1e-12);
        assert_eq!(ema_beta(100_000), 0.98);
    }

    #[test]
    fn report_series_skips_other_records_and_nulls_and_sorts() {
        let recs =
            vec![json!({"step": 20, "loss": 2.0}), json!({"step": 10, "loss": 3.0}), json!({"step": 20, "val_loss": 2.5}), json!({"step": 30, "loss": null})];
        assert_eq!(series(&recs, "loss"), vec![(10.0, 3.0), (20.0, 2.0)]);
        assert_eq!(series(&recs, "val_loss"), vec![(20.0, 2.5)]);
    }

    #[test]
    fn report_no_records_is_a_data_error() {
        let err = loss_curves_svg(&[json!({"step": 1, "lr": 0.1})], "t").unwrap_err();
        assert!(err.to_string().contains(NO_RECORDS), "{err}");
    }
}
