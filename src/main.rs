//! The `convlm` binary: the command line (`cli/`: clap subcommands dispatching to the
//! library, and the error report) with the binary's allocator (the memory layer's
//! `CachingAlloc`).

#![deny(unsafe_op_in_unsafe_fn)]

mod cli;

use convlm::tensor::memory;

/// The system allocator, with freed large blocks kept under the memory layer's budget.
#[global_allocator]
static GLOBAL: memory::CachingAlloc = memory::CachingAlloc;

fn main() {
    let status = cli::main(std::env::args_os());
    if status != 0 {
        std::process::exit(status);
    }
}
