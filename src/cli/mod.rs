//! The subcommands of the `convlm` binary, one file per group; each parses its flags with
//! clap and calls the library.

pub mod device;
pub mod inspect;
pub mod parse;
pub mod prepare;
pub mod progress;
#[cfg(target_os = "linux")]
pub mod ranks;
pub mod tools;
pub mod train;
