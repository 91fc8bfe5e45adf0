#!/usr/bin/env bash
# Benchmarks of prepared corpora (issue #17), run on text generated from ../shared/data into a
# temporary folder (never committed): tinyshakespeare repeated to ~100 MB and ~1 GB.
#
#   scripts/bench_prepare.sh [WORK_DIR]      (default: a fresh folder under $TMPDIR)
#
# Prints, for each corpus: `convlm prepare` with the character tokenizer and with a BPE-5000
# tokenizer trained beforehand (wall time, MB/s, peak RSS), then `convlm train --steps 1` on
# the prepared corpus (wall time, which includes opening the corpus, the step, an evaluation
# of 2 batches and the checkpoint; and peak RSS). Needs ~6 GB of free disk for the 1 GB case.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=../shared/data
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/convlm-bench-prepare.XXXXXX")}
mkdir -p "$WORK"
cargo build --release --locked -q
BIN="${CARGO_TARGET_DIR:-target}/release/convlm"
export CONVLM_THREADS=${CONVLM_THREADS:-2}

measure() { # label, command...: prints wall seconds and peak RSS (MB)
  local label=$1; shift
  local out
  out=$( { /usr/bin/time -f "TIME %e %M" "$@" >/dev/null; } 2>&1 | grep '^TIME' )
  read -r _ secs kb <<<"$out"
  printf '%-44s %7.2f s  %8.1f MB peak RSS\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)"
  LAST_SECS=$secs
}

[ -f "$WORK/bpe5000.json" ] || $BIN tokenizer train --data "$SHARED/tinyshakespeare.txt" --vocab-size 5000 --out "$WORK/bpe5000.json" >/dev/null
for copies in 100 1000; do
  text="$WORK/shakespeare-x$copies.txt"
  if [ ! -f "$text" ]; then
    for _ in $(seq "$copies"); do cat "$SHARED/tinyshakespeare.txt"; done >"$text"
  fi
  mb=$(echo "$(stat -c %s "$text") / 1000000" | bc -l)
  printf '\n== %s (%.0f MB)\n' "$(basename "$text")" "$mb"
  rm -rf "$WORK/char-$copies" "$WORK/bpe-$copies"
  measure "prepare, char" $BIN prepare --data "$text" --out "$WORK/char-$copies"
  printf '%-44s %7.1f MB/s\n' "" "$(echo "$mb / $LAST_SECS" | bc -l)"
  measure "prepare, BPE-5000 (trained beforehand)" $BIN prepare --data "$text" --out "$WORK/bpe-$copies" --tokenizer "$WORK/bpe5000.json"
  printf '%-44s %7.1f MB/s\n' "" "$(echo "$mb / $LAST_SECS" | bc -l)"
  # Trained right after the prepare, tokens.bin still in the page cache: windows are read
  # with pread, so the process's resident memory does not depend on it (before, a mapped
  # tokens.bin added most of the file; docs/corpus-format.md, "Memory while training").
  rm -rf "$WORK/run-$copies"
  measure "train --steps 1 on the char corpus" $BIN train --data "$WORK/char-$copies" --dataset stream --out "$WORK/run-$copies" \
    --steps 1 -q --set train.eval_batches=2 --set data.splits.train=0.9 --set data.splits.val=0.1 --set data.splits.test=0.0
done
echo
echo "files are in $WORK (delete it when done)"
