//! Stand-alone runner of the benchmark workloads (same flags as `convlm bench`), used by
//! scripts/bench_vs_pytorch.sh when the CLI subcommand is not available.
//!
//!     cargo run --release --example bench -- --workload w1 --steps 6 --warmup 2 --threads 2
use clap::Parser;
use convlm::bench::{run_workload, BenchArgs, BenchOptions};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    let opts: BenchOptions = Cli::parse().args.into();
    let report = run_workload(&opts)?;
    println!("{}", report.to_json_line());
    Ok(())
}
