//! The `convlm` binary: the command line (`cli/`: clap subcommands dispatching to the
//! library, and the error report) with the binary's allocator.

#![deny(unsafe_op_in_unsafe_fn)]

mod big_alloc;
mod cli;

#[global_allocator]
static GLOBAL: big_alloc::CachingAlloc = big_alloc::CachingAlloc;

fn main() {
    let status = cli::main(std::env::args_os());
    if status != 0 {
        std::process::exit(status);
    }
}
