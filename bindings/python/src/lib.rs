//! `convlm._convlm`, the compiled part of the Python package `convlm` (bindings/python/python):
//! a thin layer over the convlm library. Long calls run on convlm's thread pool with the GIL
//! released ([`pool`]), their events go to a progress display ([`progress`]), and the
//! library's errors become the package's exceptions ([`errors`]). `python -m convlm` runs
//! the command line's own code (`src/cli`, compiled in here).

#![deny(unsafe_op_in_unsafe_fn)]

// The `convlm` binary's command line, compiled into this module as it is.
#[path = "../../../src/cli/mod.rs"]
mod cli;

mod convert;
mod errors;
mod pool;
mod progress;
mod run;
mod tokenizer;
mod tools;
mod trainer;

use pyo3::prelude::*;

/// Large blocks are kept for reuse while training, as in the `convlm` binary (the memory layer's `CachingAlloc`; a training step
/// allocates the same buffers every step). Blocks handed to NumPy are freed through it too.
#[global_allocator]
static GLOBAL: convlm::tensor::memory::CachingAlloc = convlm::tensor::memory::CachingAlloc;

/// The compiled part of convlm; import `convlm` instead.
#[pymodule]
fn _convlm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<trainer::Trainer>()?;
    m.add_class::<run::Run>()?;
    m.add_class::<tokenizer::Tokenizer>()?;
    m.add_function(wrap_pyfunction!(trainer::train, m)?)?;
    m.add_function(wrap_pyfunction!(tools::prepare, m)?)?;
    m.add_function(wrap_pyfunction!(tools::presets, m)?)?;
    m.add_function(wrap_pyfunction!(tools::families, m)?)?;
    m.add_function(wrap_pyfunction!(tools::cli_main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
