#!/usr/bin/env bash
# The machine's arithmetic peak in GFLOP/s, measured by the built binary (`convlm peak`):
# every thread runs 12 independent chains of fused multiply-adds at once (AVX-512 or AVX2
# FMAs for fp32; `vdpbf16ps` for bf16 where the CPU has AVX512_BF16), best of 5 runs.
#   scripts/peak.sh [threads...]      (default: 1 and THREADS, which defaults to 2)
# Prints one JSON line per thread count: {"cpu", "threads", "fp32_isa", "fp32_gflops",
# "bf16_gflops"}. `convlm bench` measures the same before its steps and reports the step's
# efficiency against it (W1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
BIN="${CARGO_TARGET_DIR:-target}/release/convlm"
if [ $# -eq 0 ]; then set -- 1 "${THREADS:-2}"; fi
for t in "$@"; do
  "$BIN" peak --threads "$t" --reps 5
done
