#!/usr/bin/env bash
# One time-to-quality experiment (docs/results.md): trains for a wall-clock budget with the
# last 10% of the stream held out (nanoGPT's protocol: data.split=tail, 0.9/0.1/0), then
# scores that held-out tail over non-overlapping blocks of 64 and 256 characters and draws
# a sample. Prints one JSON line with the wall time, steps and both losses.
#   scripts/quality_run.sh RUN_DIR TIME_LIMIT [convlm train flags...]
# e.g. scripts/quality_run.sh runs/q1 263 --config shakespeare-hyena --data ../shared/data/tinyshakespeare.txt
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$1; LIMIT=$2; shift 2
BIN=${CONVLM_BIN:-${CARGO_TARGET_DIR:-target}/release/convlm}
[ -x "$BIN" ] || cargo build --release --quiet --bins

start=$(date +%s.%N)
"$BIN" train --out "$RUN" --time-limit "$LIMIT" -q \
  --set data.split=tail --set data.splits.train=0.9 --set data.splits.val=0.1 --set data.splits.test=0.0 "$@"
end=$(date +%s.%N)
v64=$("$BIN" eval --run "$RUN" --split val --block-size 64 | sed -n 's/.*loss \([0-9.]*\) .*/\1/p')
v256=$("$BIN" eval --run "$RUN" --split val --block-size 256 2>/dev/null | sed -n 's/.*loss \([0-9.]*\) .*/\1/p' || true)
steps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$RUN/state.json")
"$BIN" sample --run "$RUN" -n 1 --max-tokens 300 --temperature 0.8 --seed 1 > "$RUN/sample.txt" || true
python3 - "$RUN" "$LIMIT" "$start" "$end" "$steps" "$v64" "${v256:-}" "$*" <<'EOF'
import json, sys
run, limit, start, end, steps, v64, v256, args = sys.argv[1:]
print(json.dumps({"run": run, "time_limit": limit, "wall_s": round(float(end) - float(start), 1), "steps": int(steps),
                  "val_64": float(v64), "val_256": float(v256) if v256 else None, "args": args}))
EOF
