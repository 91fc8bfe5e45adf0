//! The embedding scatter plot: one dot per token, labelled with the token's text.

use std::fmt::Write;

use super::svg::{close, escape, legend, nice_ticks, Frame, Ticks, BLUE, RED};
use crate::error::{Error, Result};

/// Only the first this many ids get a text label; every id gets a dot.
pub const MAX_LABELS: usize = 300;

/// A token's text made visible for a label: space, tab, newline and carriage return become
/// `␣ ⇥ ↵ ␍`, other control characters `\u{..}`, and an empty text `∅`. (XML escaping is
/// done when the SVG is written.)
pub fn visible_token(text: &str) -> String {
    if text.is_empty() {
        return "∅".to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        match c {
            ' ' => out.push('␣'),
            '\t' => out.push('⇥'),
            '\n' => out.push('↵'),
            '\r' => out.push('␍'),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A scatter plot of 2-D `points` (e.g. from [`super::embedding_pca`]) as an SVG document:
/// one dot per point, special tokens (`specials[i]`) in red and the rest in blue, the first
/// [`MAX_LABELS`] points labelled with `labels[i]` (escaped; see [`visible_token`] to make
/// whitespace tokens visible first). Both axes share one scale, so distances are true.
/// `labels` and `specials` must be as long as `points`.
pub fn embeddings_svg(points: &[[f64; 2]], labels: &[String], specials: &[bool], title: &str) -> Result<String> {
    if labels.len() != points.len() || specials.len() != points.len() {
        return Err(Error::Data(format!("embeddings plot: {} points but {} labels and {} special flags", points.len(), labels.len(), specials.len())));
    }
    if points.is_empty() {
        return Err(Error::Data("embeddings plot: no points".into()));
    }
    if points.iter().flatten().any(|x| !x.is_finite()) {
        return Err(Error::Data("embeddings plot: a point is NaN or infinite".into()));
    }
    let range = |k: usize| points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[k]), hi.max(p[k])));
    let ((x_lo, x_hi), (y_lo, y_hi)) = (range(0), range(1));
    // One span for both axes, centred on each axis's data, 4% margin for the labels.
    let half = 0.52 * (x_hi - x_lo).max(y_hi - y_lo).max(1e-9);
    let (xc, yc) = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0);
    let (x, y) = (nice_ticks(xc - half, xc + half, 7), nice_ticks(yc - half, yc + half, 7));
    // nice_ticks may widen one axis more than the other: equalise the spans again.
    let span = (x.hi - x.lo).max(y.hi - y.lo);
    let widen = |t: Ticks| {
        let pad = (span - (t.hi - t.lo)) / 2.0;
        Ticks { lo: t.lo - pad, hi: t.hi + pad, ..t }
    };
    let frame = Frame { width: 800.0, height: 800.0, left: 72.0, top: 44.0, right: 776.0, bottom: 748.0, x: widen(x), y: widen(y) };

    let mut s = frame.begin(title, "principal component 1", "principal component 2");
    for (special, colour) in [(false, BLUE), (true, RED)] {
        let _ = write!(s, r#"<g fill="{colour}" fill-opacity="0.8">"#);
        for (p, _) in points.iter().zip(specials).filter(|(_, &sp)| sp == special) {
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5"/>"#, frame.px(p[0]), frame.py(p[1]));
        }
        s.push_str("</g>\n");
    }
    s.push_str(r#"<g font-size="11">"#);
    for ((p, label), &special) in points.iter().zip(labels).zip(specials).take(MAX_LABELS) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{}">{}</text>"#,
            frame.px(p[0]) + 4.0,
            frame.py(p[1]) - 4.0,
            if special { RED } else { "#333333" },
            escape(label)
        );
    }
    s.push_str("</g>\n");
    let mut rows = vec![(format!(r#"<circle cx="12" cy="0" r="3.5" fill="{BLUE}"/>"#), "token".to_string())];
    if specials.iter().any(|&s| s) {
        rows.push((format!(r#"<circle cx="12" cy="0" r="3.5" fill="{RED}"/>"#), "special token".to_string()));
    }
    if points.len() > MAX_LABELS {
        rows.push((String::new(), format!("labels: first {MAX_LABELS} of {} ids", points.len())));
    }
    s.push_str(&legend(&frame, &rows));
    Ok(close(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_visible_token_shows_whitespace() {
        assert_eq!(visible_token(" a\n"), "␣a↵");
        assert_eq!(visible_token(""), "∅");
        assert_eq!(visible_token("\u{7}"), "\\u{7}");
        assert_eq!(visible_token("<pad>"), "<pad>");
    }

    #[test]
    fn report_embeddings_svg_rejects_mismatched_lengths() {
        assert!(embeddings_svg(&[[0.0, 0.0]], &[], &[false], "t").is_err());
        assert!(embeddings_svg(&[], &[], &[], "t").is_err());
    }
}
