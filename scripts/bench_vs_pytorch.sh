#!/usr/bin/env bash
# Side-by-side training-step benchmark: convlm vs PyTorch on the same CPU, same run.
#   scripts/bench_vs_pytorch.sh [w1|w2|w3|all] [steps] [warmup]
# Env: ROUNDS (alternating rounds per workload, default 3), THREADS (default 2),
#      CONVLM_TORCH_VENV (default ~/.cache/convlm-torch-venv).
# Each round runs convlm then PyTorch (order swapped every other round, so neither always
# gets the quieter slot); prints every JSON line, then per workload the median over rounds
# of each framework's per-run median step time and the ratio convlm/pytorch.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}; STEPS=${2:-10}; WARMUP=${3:-2}
ROUNDS=${ROUNDS:-3}; THREADS=${THREADS:-2}
SHARED=${CONVLM_SHARED:-../shared}
VENV=${CONVLM_TORCH_VENV:-$HOME/.cache/convlm-torch-venv}
PY="$VENV/bin/python"

cargo build --release --quiet --bins
CONVLM=(./target/release/convlm bench)
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  bash "$SHARED/bench/setup_pytorch.sh" >&2
fi

case "$WHICH" in all) WORKLOADS="w1 w2 w3";; w1|w2|w3) WORKLOADS=$WHICH;; *) echo "usage: $0 [w1|w2|w3|all] [steps] [warmup]" >&2; exit 2;; esac
LOG=$(mktemp); trap 'rm -f "$LOG"' EXIT

run_convlm()  { "${CONVLM[@]}" --workload "$1" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" | tail -n 1 | tee -a "$LOG"; }
run_pytorch() { "$PY" "$SHARED/bench/bench_pytorch.py" --workload "$1" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" | tail -n 1 | tee -a "$LOG"; }

for w in $WORKLOADS; do
  for r in $(seq 1 "$ROUNDS"); do
    if (( r % 2 )); then run_convlm "$w"; run_pytorch "$w"; else run_pytorch "$w"; run_convlm "$w"; fi
  done
done

"$PY" - "$LOG" "$ROUNDS" "$STEPS" "$WARMUP" <<'PYEOF'
import json, statistics, sys
log, rounds, steps, warmup = sys.argv[1], *sys.argv[2:]
runs = [json.loads(l) for l in open(log) if l.strip().startswith("{")]
print(f"\n{rounds} alternating rounds x {steps} counted steps ({warmup} warm-up), median of per-run medians")
print(f"{'workload':8} {'convlm ms':>10} {'pytorch ms':>11} {'ratio':>6}  convlm loss first/last   pytorch loss first/last  extra")
for w in sorted({r["workload"] for r in runs}):
    c = [r for r in runs if r["workload"] == w and r["framework"] == "convlm"]
    p = [r for r in runs if r["workload"] == w and r["framework"].startswith("pytorch")]
    cm = statistics.median(r["ms_per_step_median"] for r in c)
    pm = statistics.median(r["ms_per_step_median"] for r in p)
    extra = f"convlm {statistics.median(r['gflops'] for r in c):.1f} GFLOP/s" if "gflops" in c[0] else ""
    print(f"{w:8} {cm:10.2f} {pm:11.2f} {cm / pm:6.3f}  {c[0]['loss_first']:.4f}/{c[0]['loss_last']:.4f}"
          f"         {p[0]['loss_first']:.4f}/{p[0]['loss_last']:.4f}         {extra}")
PYEOF
