//! The GPU suite, in one test binary (each binary links wgpu; CI's disk is short): every op
//! against the CPU engine (`ops`), every golden family on every device (`golden`), cached
//! generation against the CPU's (`generate`), what a training step moves (`train`), the
//! buffer pool behind the memory layer's interface (`pool`) and the GPU through the binary
//! (`cli`). Without an adapter a GPU test prints `skipped: <reason>`,
//! a failure under `CONVLM_REQUIRE_GPU=1` (set by `.ci/run`, which installs Mesa's
//! lavapipe). docs/gpu.md lists what each checks.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod generate;
mod golden;
mod ops;
mod pool;
mod train;
