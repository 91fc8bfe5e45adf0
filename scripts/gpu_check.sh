#!/usr/bin/env bash
# On a machine with a real GPU: name the adapter, run the self-check (every GPU kernel
# against the CPU engine), then time W1-W4 with `convlm bench --device gpu` and, when PyTorch
# with CUDA is installed, ../shared/bench/bench_pytorch.py --device cuda in fp32 and with
# --tf32. One JSON line per run on stdout (the self-check's table and progress on stderr);
# about 2-4 minutes. Needs only a prebuilt binary: no Rust toolchain.
#
#   scripts/gpu_check.sh [BIN]        BIN: the convlm binary (default: convlm on PATH, else
#                                     target/release/convlm)
# Environment: STEPS (counted steps, default 20), WARMUP (default 5), DEVICE (default gpu),
# PYTHON (default: ~/.cache/convlm-torch-venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-}"
if [ -z "$BIN" ]; then
  if command -v convlm >/dev/null 2>&1; then BIN=convlm; else BIN=target/release/convlm; fi
fi
if ! "$BIN" --version >/dev/null 2>&1; then
  echo "gpu_check: cannot run the convlm binary '$BIN' (give its path as the first argument)" >&2
  exit 2
fi
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-5}"
DEVICE="${DEVICE:-gpu}"
status=0

json() { # key value... → one JSON object line (values are JSON already)
  local out="{" sep=""
  while [ $# -gt 1 ]; do out+="$sep\"$1\":$2"; sep=","; shift 2; done
  echo "$out}"
}
quote() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || printf '"%s"' "${1//\"/\'}"; }

# 1. The adapters, and the one --device picks.
echo "== adapters" >&2
"$BIN" devices >&2
# 2. The self-check: every kernel against the CPU engine.
echo "== selftest --device $DEVICE" >&2
started=$(date +%s)
if "$BIN" selftest --device "$DEVICE" >/tmp/convlm_selftest.$$ 2>&1; then
  ok=true
else
  ok=false
  status=1
fi
cat /tmp/convlm_selftest.$$ >&2
adapter=$(grep -m1 '^device: ' /tmp/convlm_selftest.$$ | sed 's/^device: //')
checks=$(grep -Eo '^[0-9]+ checks' /tmp/convlm_selftest.$$ | grep -Eo '[0-9]+' || echo 0)
mismatches=$(grep -c 'MISMATCH' /tmp/convlm_selftest.$$ || true)
rm -f /tmp/convlm_selftest.$$
json run '"selftest"' device "$(quote "$adapter")" ok "$ok" checks "${checks:-0}" mismatches "${mismatches:-0}" seconds $(( $(date +%s) - started ))

# 3. convlm on the GPU.
for w in w1 w2 w3 w4; do
  echo "== convlm bench --workload $w --device $DEVICE" >&2
  line=$("$BIN" bench --workload "$w" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" 2>/dev/null | tail -n 1)
  if [ -n "$line" ]; then echo "$line"; else json run "\"convlm $w\"" error '"bench failed"'; status=1; fi
done

# 4. PyTorch on CUDA, fp32 (TF32 off) and TF32, when it is installed.
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$HOME/.cache/convlm-torch-venv/bin/python" ]; then PYTHON="$HOME/.cache/convlm-torch-venv/bin/python"; else PYTHON=python3; fi
fi
BENCH=../shared/bench/bench_pytorch.py
if [ -f "$BENCH" ] && "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  gpu_name=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))')
  echo "== PyTorch on $gpu_name" >&2
  for w in w1 w2 w3 w4; do
    for mode in fp32 tf32; do
      flag=""
      [ "$mode" = tf32 ] && flag="--tf32"
      line=$("$PYTHON" "$BENCH" --workload "$w" --steps "$STEPS" --warmup "$WARMUP" --device cuda $flag 2>/dev/null | tail -n 1)
      if [ -n "$line" ]; then
        echo "$line" | "$PYTHON" -c 'import json,sys; d=json.loads(sys.stdin.read()); d["device"]=sys.argv[1]; d["precision"]=sys.argv[2]; print(json.dumps(d))' "$gpu_name" "$mode"
      else
        json run "\"pytorch $w $mode\"" error '"bench_pytorch.py failed"'
      fi
    done
  done
else
  json run '"pytorch"' skipped '"PyTorch with CUDA is not installed (../shared/bench/setup_pytorch.sh)"'
fi
exit $status
