//! Printing that never panics. `println!` panics when stdout is a closed pipe; a training run
//! must not die because the reader of its output went away (`convlm train … | head -2`), so
//! `train` prints through [`out`] and [`err`], which drop a line that cannot be written and
//! let the run go on. Other commands print through [`print`], whose errors they report
//! (with SIGPIPE back at its default, a closed pipe ends them quietly before that, see
//! [`super::signals`]).

use std::fmt::Display;
use std::io::Write;

use anyhow::{Context, Result};

/// A line on stdout, dropped if stdout is gone.
pub fn out(line: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A line on stderr, dropped if stderr is gone.
pub fn err(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Text on stdout (a line needs its own `\n`); a failed write (a full disk) is an error.
pub fn print(text: impl Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}").and_then(|_| stdout.flush()).context("writing to standard output")
}
