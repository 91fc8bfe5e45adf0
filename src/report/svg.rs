//! Hand-written SVG helpers shared by the plots: XML escaping, "nice" axis ticks and a
//! plot frame (axes, grid, tick labels, axis labels, title) that maps data to pixels.

use std::fmt::Write;

/// Colours of the plots (matplotlib's "tab10" blue, red and orange).
pub const BLUE: &str = "#1f77b4";
pub const RED: &str = "#d62728";
pub const ORANGE: &str = "#ff7f0e";
/// Axis, text and grid colours.
const INK: &str = "#222222";
const GRID: &str = "#e5e5e5";

/// Escapes `s` for SVG text and attribute values: `& < > " '` become entities, and the
/// characters XML 1.0 forbids (most control characters) are written as `\u{..}` so the
/// document stays well formed.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Axis ticks in the manner of Heckbert's "nice numbers" (Graphics Gems, 1990): the axis
/// runs from `lo` to `hi`, both multiples of `step`, which is 1, 2 or 5 times a power of ten.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticks {
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
    pub values: Vec<f64>,
}

/// The number of the form 1, 2 or 5 × 10^k closest to `x` (> 0).
fn nice_number(x: f64) -> f64 {
    let base = 10f64.powf(x.log10().floor());
    let f = x / base;
    let nice = match f {
        f if f < 1.5 => 1.0,
        f if f < 3.0 => 2.0,
        f if f < 7.0 => 5.0,
        _ => 10.0,
    };
    nice * base
}

/// About `target` nice ticks covering `[lo, hi]` (a degenerate or reversed range is widened;
/// non-finite bounds give the axis 0..1).
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() { (lo.min(hi), lo.max(hi)) } else { (0.0, 1.0) };
    if hi - lo <= 1e-12 * lo.abs().max(hi.abs()).max(1e-300) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let target = target.max(2) as f64;
    let step = nice_number((hi - lo) / (target - 1.0));
    let start = (lo / step).floor() * step;
    let end = (hi / step).ceil() * step;
    let n = ((end - start) / step).round() as usize;
    let values = (0..=n)
        .map(|i| {
            let v = start + i as f64 * step;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect();
    Ticks { lo: start, hi: end, step, values }
}

/// A tick label with just enough decimals for `step`; thousands as `k` on big axes.
pub fn format_tick(v: f64, step: f64) -> String {
    if step >= 1000.0 && v.abs() >= 10_000.0 && (v / 1000.0).fract() == 0.0 {
        return format!("{}k", v / 1000.0);
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
    format!("{v:.decimals$}")
}

/// A plot area inside an SVG canvas, with its data ranges.
#[derive(Clone, Debug)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    /// Plot area in pixels: left, top, right, bottom.
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    pub x: Ticks,
    pub y: Ticks,
}

impl Frame {
    /// Pixel x of data `x`.
    pub fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.lo) / (self.x.hi - self.x.lo) * (self.right - self.left)
    }

    /// Pixel y of data `y` (up is larger).
    pub fn py(&self, y: f64) -> f64 {
        self.bottom - (y - self.y.lo) / (self.y.hi - self.y.lo) * (self.bottom - self.top)
    }

    /// Opens the document: `<svg>` header, white background, title, grid, ticks, tick labels,
    /// axis labels and the frame. The caller appends the data and closes with [`close`].
    pub fn begin(&self, title: &str, x_label: &str, y_label: &str) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>"#);
        let (title, size) = fit_title(title, w - 20.0);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="{size:.1}" font-weight="bold" fill="{INK}">{}</text>"#,
            w / 2.0,
            escape(&title)
        );
        let mut grid = String::new();
        let mut labels = String::new();
        for &v in &self.x.values {
            let x = self.px(v);
            let _ = writeln!(grid, r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/>"#, self.top, self.bottom);
            let _ = writeln!(
                labels,
                r#"<line x1="{x:.1}" y1="{b:.1}" x2="{x:.1}" y2="{:.1}" stroke="{INK}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{INK}">{}</text>"#,
                self.bottom + 5.0,
                self.bottom + 19.0,
                escape(&format_tick(v, self.x.step)),
                b = self.bottom
            );
        }
        for &v in &self.y.values {
            let y = self.py(v);
            let _ = writeln!(grid, r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#, self.left, self.right);
            let _ = writeln!(
                labels,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{l:.1}" y2="{y:.1}" stroke="{INK}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{INK}">{}</text>"#,
                self.left - 5.0,
                self.left - 8.0,
                y + 4.0,
                escape(&format_tick(v, self.y.step)),
                l = self.left
            );
        }
        let _ = writeln!(s, r#"<g stroke="{GRID}" stroke-width="1">"#);
        s.push_str(&grid);
        s.push_str("</g>\n");
        s.push_str(&labels);
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{INK}"/>"#,
            self.left,
            self.top,
            self.right - self.left,
            self.bottom - self.top
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" fill="{INK}">{}</text>"#,
            (self.left + self.right) / 2.0,
            h - 12.0,
            escape(x_label)
        );
        let (cx, cy) = (18.0, (self.top + self.bottom) / 2.0);
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{cy:.1}" transform="rotate(-90 {cx:.1} {cy:.1})" text-anchor="middle" font-size="13" fill="{INK}">{}</text>"#,
            escape(y_label)
        );
        s
    }
}

/// A title that fits `width` pixels: 16 px bold, smaller for long titles (down to 10 px),
/// then cut with an ellipsis. Glyphs are taken as 0.62 em wide (bold sans-serif).
fn fit_title(title: &str, width: f64) -> (String, f64) {
    let chars = title.chars().count().max(1) as f64;
    let size = (width / (0.62 * chars)).clamp(10.0, 16.0);
    if 0.62 * size * chars <= width * (1.0 + 1e-9) {
        return (title.to_string(), size);
    }
    let max_chars = (width / (0.62 * size)).floor() as usize;
    let cut: String = title.chars().take(max_chars.saturating_sub(1)).collect();
    (format!("{cut}…"), size)
}

/// Closes a document opened by [`Frame::begin`].
pub fn close(mut s: String) -> String {
    s.push_str("</svg>\n");
    s
}

/// A legend box in the top-right corner of the plot area: one row per `(swatch, text)`,
/// where the swatch is SVG drawn around the origin (about 24 × 10 pixels).
pub fn legend(frame: &Frame, rows: &[(String, String)]) -> String {
    let longest = rows.iter().map(|(_, t)| t.chars().count()).max().unwrap_or(0) as f64;
    let (w, h) = (44.0 + 7.0 * longest, 8.0 + 18.0 * rows.len() as f64);
    let (x0, y0) = (frame.right - w - 10.0, frame.top + 10.0);
    let mut s = format!(
        r##"<g transform="translate({x0:.1} {y0:.1})"><rect x="0" y="0" width="{w:.1}" height="{h:.1}" fill="white" fill-opacity="0.9" stroke="#999999"/>"##
    );
    for (i, (swatch, text)) in rows.iter().enumerate() {
        let y = 4.0 + 18.0 * i as f64 + 9.0;
        let _ = write!(s, r#"<g transform="translate(8 {y:.1})">{swatch}</g><text x="38" y="{:.1}" fill="{INK}">{}</text>"#, y + 4.0, escape(text));
    }
    s.push_str("</g>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_escape_entities_and_control_characters() {
        assert_eq!(escape(r#"<pad> & "x" 'y'"#), "&lt;pad&gt; &amp; &quot;x&quot; &apos;y&apos;");
        assert_eq!(escape("a\u{1}b"), "a\\u{1}b");
    }

    #[test]
    fn report_nice_ticks_cover_range_with_round_steps() {
        let t = nice_ticks(1.37, 3.92, 6);
        assert_eq!(t.step, 0.5);
        assert!(t.lo <= 1.37 && t.hi >= 3.92);
        assert_eq!(t.values.first(), Some(&1.0));
        assert_eq!(t.values.last(), Some(&4.0));
        let t = nice_ticks(0.0, 1000.0, 6);
        assert_eq!((t.lo, t.hi, t.step), (0.0, 1000.0, 200.0));
        let t = nice_ticks(2.5, 2.5, 6);
        assert!(t.lo < 2.5 && t.hi > 2.5 && t.values.len() >= 2);
        let t = nice_ticks(f64::NAN, 1.0, 6);
        assert_eq!((t.lo, t.hi), (0.0, 1.0));
    }

    #[test]
    fn report_long_titles_shrink_then_are_cut() {
        assert_eq!(fit_title("short", 880.0), ("short".to_string(), 16.0));
        let (t, size) = fit_title(&"x".repeat(100), 880.0);
        assert!((10.0..16.0).contains(&size) && t.chars().count() == 100);
        let (t, size) = fit_title(&"x".repeat(300), 880.0);
        assert!(size == 10.0 && t.ends_with('…') && t.chars().count() < 300);
    }

    #[test]
    fn report_tick_labels() {
        assert_eq!(format_tick(0.5, 0.5), "0.5");
        assert_eq!(format_tick(2.0, 0.05), "2.00");
        assert_eq!(format_tick(400.0, 200.0), "400");
        assert_eq!(format_tick(20000.0, 5000.0), "20k");
    }
}
