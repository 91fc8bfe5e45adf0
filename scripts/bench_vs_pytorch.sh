#!/usr/bin/env bash
# Side-by-side training-step benchmark: convlm vs PyTorch on the same CPU, same run.
#   scripts/bench_vs_pytorch.sh [w1|w2|w3|w4|train|all] [steps] [warmup]
# Env: ROUNDS (alternating rounds per workload, default 3), THREADS (default 2),
#      PRECISIONS ("fp32 bf16" where /proc/cpuinfo lists avx512_bf16, else "fp32"),
#      CONVLM_TORCH_VENV (default ~/.cache/convlm-torch-venv).
# Each round runs convlm then PyTorch (order swapped every other round, so neither always
# gets the quieter slot), in each precision: bf16 rows are `convlm bench --precision bf16`
# against `bench_pytorch.py --bf16` (torch.autocast). Prints every JSON line, then per
# workload and precision the median over rounds of each framework's per-run median step
# time, the ratio convlm/pytorch, and for bf16 convlm's bf16/fp32 ratio.
#
# `train` times the product itself: `convlm train --config reviews-bpe-cnn` (W1's model) on
# tinyshakespeare, its per-step `step_ms` from metrics.jsonl after the warm-up steps, in
# rounds with `convlm bench --workload w1` and PyTorch's W1 (the three rotate their order).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-all}; STEPS=${2:-10}; WARMUP=${3:-2}
ROUNDS=${ROUNDS:-3}; THREADS=${THREADS:-2}
if [ -z "${PRECISIONS:-}" ]; then
  if grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then PRECISIONS="fp32 bf16"; else PRECISIONS="fp32"; fi
fi
SHARED=${CONVLM_SHARED:-../shared}
VENV=${CONVLM_TORCH_VENV:-$HOME/.cache/convlm-torch-venv}
PY="$VENV/bin/python"

cargo build --release --quiet --bins
BIN="${CARGO_TARGET_DIR:-target}/release/convlm"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  bash "$SHARED/bench/setup_pytorch.sh" >&2
fi

case "$WHICH" in all) WORKLOADS="w1 w2 w3 w4 train";; w1|w2|w3|w4|train) WORKLOADS=$WHICH;; *) echo "usage: $0 [w1|w2|w3|w4|train|all] [steps] [warmup]" >&2; exit 2;; esac
LOG=$(mktemp); RUN=$(mktemp -d); trap 'rm -rf "$LOG" "$RUN"' EXIT

# $2: fp32 (default) or bf16.
run_convlm()  { "$BIN" bench --workload "$1" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --precision "${2:-fp32}" | tail -n 1 | tee -a "$LOG"; }
run_pytorch() {
  local bf16=(); if [ "${2:-fp32}" = bf16 ]; then bf16=(--bf16); fi
  "$PY" "$SHARED/bench/bench_pytorch.py" --workload "$1" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" "${bf16[@]}" | tail -n 1 | tee -a "$LOG"
}
run_train() {
  rm -rf "$RUN/train"
  # One evaluation of one batch, after the last step (not part of any step_ms).
  "$BIN" train --config reviews-bpe-cnn --data "$SHARED/data/tinyshakespeare.txt" --out "$RUN/train" -q \
    --steps $((STEPS + WARMUP)) --threads "$THREADS" --set train.eval_every=1000000 --set train.eval_batches=1 >/dev/null
  "$PY" - "$RUN/train/metrics.jsonl" "$WARMUP" "$THREADS" <<'PYEOF' | tee -a "$LOG"
import json, statistics, sys
path, warmup, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = [r for r in map(json.loads, open(path)) if "step_ms" in r][warmup:]
ms = [r["step_ms"] for r in steps]
print(json.dumps({"workload": "train", "framework": "convlm-train", "ms_per_step_median": statistics.median(ms), "ms_per_step_min": min(ms),
                  "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"], "threads": threads, "steps": len(ms), "warmup": warmup}))
PYEOF
}

# Before the rounds: the BPE tokenizer and the prepared corpus of the train row are made
# once (the corpus cache keeps them), so no round pays for them.
if [[ " $WORKLOADS " == *" train "* ]]; then
  "$BIN" train --config reviews-bpe-cnn --data "$SHARED/data/tinyshakespeare.txt" --out "$RUN/prepare" -q --steps 1 \
    --threads "$THREADS" --set train.eval_batches=1 >/dev/null
fi

for w in $WORKLOADS; do
  for r in $(seq 1 "$ROUNDS"); do
    if [ "$w" = train ]; then
      case $((r % 3)) in
        1) run_train; run_convlm w1; run_pytorch w1;;
        2) run_pytorch w1; run_train; run_convlm w1;;
        0) run_convlm w1; run_pytorch w1; run_train;;
      esac
    else
      for p in $PRECISIONS; do
        if (( r % 2 )); then run_convlm "$w" "$p"; run_pytorch "$w" "$p"; else run_pytorch "$w" "$p"; run_convlm "$w" "$p"; fi
      done
    fi
  done
done

"$PY" - "$LOG" "$ROUNDS" "$STEPS" "$WARMUP" <<'PYEOF'
import json, statistics, sys
log, rounds, steps, warmup = sys.argv[1], *sys.argv[2:]
runs = [json.loads(l) for l in open(log) if l.strip().startswith("{")]
def median(workload, framework):
    ms = [r["ms_per_step_median"] for r in runs if r["workload"] == workload and r["framework"] == framework]
    return statistics.median(ms) if ms else None
cpu = next((r["cpu"] for r in runs if "cpu" in r), "unknown CPU")
print(f"\n{rounds} alternating rounds x {steps} counted steps ({warmup} warm-up), median of per-run medians, on {cpu}")
print(f"{'workload':8} {'prec':4} {'convlm ms':>10} {'pytorch ms':>11} {'ratio':>6}  convlm loss first/last   pytorch loss first/last  extra")
for w in sorted({r["workload"] for r in runs} - {"train"}):
    for prec, suffix in [("fp32", ""), ("bf16", "+bf16")]:
        c = [r for r in runs if r["workload"] == w and r["framework"] == "convlm" + suffix]
        p = [r for r in runs if r["workload"] == w and r["framework"] == "pytorch" + suffix]
        if not c or not p:
            continue
        cm, pm = median(w, "convlm" + suffix), median(w, "pytorch" + suffix)
        extra = []
        if "gflops" in c[0]:
            extra.append(f"convlm {statistics.median(r['gflops'] for r in c):.1f} GFLOP/s")
        if c[0].get("efficiency") is not None:
            extra.append(f"{100 * statistics.median(r['efficiency'] for r in c):.0f}% of the {prec} peak")
        base = median(w, "convlm")
        if suffix and base:
            extra.append(f"convlm bf16/fp32 {cm / base:.3f}")
        print(f"{w:8} {prec:4} {cm:10.2f} {pm:11.2f} {cm / pm:6.3f}  {c[0]['loss_first']:.4f}/{c[0]['loss_last']:.4f}"
              f"         {p[0]['loss_first']:.4f}/{p[0]['loss_last']:.4f}         {'; '.join(extra)}")
tm = median("train", "convlm-train")
if tm is not None:
    bm, pm = median("w1", "convlm"), median("w1", "pytorch")
    print(f"{'train':8} {'fp32':4} {tm:10.2f} {pm:11.2f} {tm / pm:6.3f}  `convlm train --config reviews-bpe-cnn`: {tm / bm:.3f}x `convlm bench --workload w1` ({bm:.2f} ms)")
PYEOF
