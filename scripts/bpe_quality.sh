#!/usr/bin/env bash
# The BPE time-to-quality measurement of issue #32, for a quiet machine: convlm's
# `reviews-best` against nanoGPT's 4 x 128 transformer, same tokens, same held-out text, same
# wall time.
#
#   scripts/bpe_quality.sh REVIEWS_DIR [WORK_DIR]
#   e.g. scripts/bpe_quality.sh /work/data-ext/review_polarity/txt_sentoken/pos
#
# REVIEWS_DIR: a folder of reviews, one per *.txt file (other files are ignored). In name
# order, the first 900 are trained on and the last 100 held out (it needs at least 1,000).
# One BPE-5000 tokenizer, trained on the 900, makes every id. For each budget:
#   * convlm: `train --config reviews-best --time-limit B` on the 900, then `eval --data` on
#     the 100 with `--block-size 256` (non-overlapping 256-token blocks);
#   * nanoGPT (its repository at HEAD of the local mirror, `train.py` with
#     config/train_shakespeare_char.py and its CPU settings --device=cpu --compile=False, fp32):
#     4 layers x 128 (4 heads), dropout 0.1, AdamW cosine, block 256, batch 16, no gradient
#     accumulation, on the same ids (train.bin/val.bin are the prepared corpora's tokens.bin);
#     its iterations are set so that it trains for B seconds (ms per iteration measured by a
#     short first run), and its final model is scored on exactly the blocks convlm scores
#     (scripts/score_heldout.py);
#   * every convlm checkpoint is also loaded into ../shared/reference/models.py
#     (strict=True) and scored there on the same blocks (reference_loss; the two must agree).
# Prints one line per model and budget and writes them to WORK_DIR/results.tsv.
#
# Settings (environment): BUDGETS (seconds, default "300 900"), MODELS (default
# "reviews-best nanogpt"; add reviews-bpe-cnn for the seed's model), THREADS (default 2),
# NANOGPT_GIT (default /work/.mirror/karpathy+nanoGPT/repo), TORCH_VENV (default
# ~/.cache/convlm-torch-venv), CONVLM_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
REVIEWS=${1:?usage: scripts/bpe_quality.sh REVIEWS_DIR [WORK_DIR]}
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/convlm-bpe-quality.XXXXXX")}
BUDGETS=${BUDGETS:-300 900}
MODELS=${MODELS:-reviews-best nanogpt}
THREADS=${THREADS:-2}
NANOGPT_GIT=${NANOGPT_GIT:-/work/.mirror/karpathy+nanoGPT/repo}
PY=${TORCH_VENV:-$HOME/.cache/convlm-torch-venv}/bin/python
BIN=${CONVLM_BIN:-${CARGO_TARGET_DIR:-target}/release/convlm}
BLOCK=256
[ -x "$BIN" ] || cargo build --release --locked --quiet --bins
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export CONVLM_CACHE=$WORK/cache CONVLM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; budgets: $BUDGETS s; work: $WORK"

# --- The split: first 900 reviews trained on, last 100 held out --------------------------
mapfile -t files < <(find "$REVIEWS" -maxdepth 1 -type f -name '*.txt' -printf '%f\n' | LC_ALL=C sort)
[ "${#files[@]}" -ge 1000 ] || { echo "error: $REVIEWS holds ${#files[@]} *.txt files, needs at least 1000" >&2; exit 2; }
n=${#files[@]}
rm -rf "$WORK/train" "$WORK/heldout"
mkdir -p "$WORK/train" "$WORK/heldout"
for f in "${files[@]:0:900}"; do cp "$REVIEWS/$f" "$WORK/train/"; done
for f in "${files[@]:$((n - 100)):100}"; do cp "$REVIEWS/$f" "$WORK/heldout/"; done
echo "train: ${files[0]} .. ${files[899]}; held out: ${files[$((n - 100))]} .. ${files[$((n - 1))]}"

# --- One BPE-5000 tokenizer, trained on the 900; the same ids for every model -------------
"$BIN" prepare --data "$WORK/train" --out "$WORK/corpus-train" --tokenizer bpe --vocab-size 5000 --dataset stream --force >/dev/null
"$BIN" prepare --data "$WORK/heldout" --out "$WORK/corpus-heldout" --tokenizer "$WORK/corpus-train/tokenizer.json" --dataset stream --force >/dev/null
read -r vocab dtype < <(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['vocab_size'], m['dtype'])" "$WORK/corpus-train/corpus.json")
[ "$dtype" = u16 ] || { echo "error: the corpus ids are $dtype, nanoGPT reads uint16" >&2; exit 2; }
echo "tokenizer: BPE, $vocab ids"

# --- nanoGPT, from the local mirror ------------------------------------------------------
NANO=$WORK/nanogpt
if [[ " $MODELS " == *" nanogpt "* ]]; then
  rm -rf "$NANO" && mkdir -p "$NANO/data/reviews"
  git --git-dir="$NANOGPT_GIT" archive HEAD | tar -x -C "$NANO"
  cp "$WORK/corpus-train/tokens.bin" "$NANO/data/reviews/train.bin"
  cp "$WORK/corpus-heldout/tokens.bin" "$NANO/data/reviews/val.bin"
  "$PY" -c "import pickle,sys; pickle.dump({'vocab_size': int(sys.argv[2])}, open(sys.argv[1], 'wb'))" "$NANO/data/reviews/meta.pkl" "$vocab"
fi
nanogpt_train() { # out_dir, max_iters
  (cd "$NANO" && "$PY" train.py config/train_shakespeare_char.py --device=cpu --compile=False --dtype=float32 \
    --dataset=reviews --out_dir="$1" --n_layer=4 --n_head=4 --n_embd=128 --dropout=0.1 --block_size=$BLOCK --batch_size=16 \
    --gradient_accumulation_steps=1 --max_iters="$2" --lr_decay_iters="$2" --eval_interval="$2" --eval_iters=20 \
    --log_interval=1 --always_save_checkpoint=True)
}

RESULTS=$WORK/results.tsv
printf 'model\tbudget_s\twall_s\tsteps\theldout_loss\ttokens\treference_loss\n' > "$RESULTS"
report() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" | tee -a "$RESULTS"; }
# The held-out ids scored by a PyTorch model over convlm's evaluation blocks: "loss tokens".
score() { "$PY" "$REPO/scripts/score_heldout.py" --ids "$WORK/corpus-heldout/tokens.bin" --block $BLOCK "$@"; }

if [[ " $MODELS " == *" nanogpt "* ]]; then
  # nanoGPT's ms per iteration: the median of a short run's, its first 5 iterations dropped.
  nanogpt_train "$WORK/nanogpt-calibrate" 30 > "$WORK/nanogpt-calibrate.log" 2>&1 || { tail -20 "$WORK/nanogpt-calibrate.log" >&2; exit 1; }
  ms=$(sed -n 's/^iter \([0-9]*\): .* time \([0-9.]*\)ms.*/\1 \2/p' "$WORK/nanogpt-calibrate.log" |
    awk '$1 >= 5 { print $2 }' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  echo "nanoGPT: $ms ms per iteration"
fi

for budget in $BUDGETS; do
  for model in $MODELS; do
    if [ "$model" = nanogpt ]; then
      # The two evaluations (start and end, 20 batches each of train and val) take about
      # 2 x 40 forward passes, a third of an iteration each.
      iters=$(python3 -c "import sys; print(max(int(float(sys.argv[1]) * 1000 / float(sys.argv[2])) - 27, 10))" "$budget" "$ms")
      out=$WORK/nanogpt-$budget
      start=$(date +%s.%N)
      nanogpt_train "$out" "$iters" > "$out.log" 2>&1 || { tail -20 "$out.log" >&2; exit 1; }
      wall=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)")
      read -r loss tokens < <(cd "$NANO" && score --nanogpt "$out/ckpt.pt")
      [ -n "${tokens:-}" ] || { echo "error: scoring $out/ckpt.pt failed" >&2; exit 1; }
      report "nanogpt-4x128 (${ms} ms/iter)" "$budget" "$wall" "$iters" "$loss" "$tokens" -
    else
      run=$WORK/run-$model-$budget
      start=$(date +%s.%N)
      "$BIN" train --config "$model" --data "$WORK/corpus-train" --time-limit "$budget" --out "$run" --force -q --threads "$THREADS" >/dev/null
      wall=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$start" "$(date +%s.%N)")
      steps=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$run/state.json")
      line=$("$BIN" eval --run "$run" --data "$WORK/heldout" --block-size $BLOCK)
      loss=$(sed -n 's/.*loss \([0-9.]*\) nats.*/\1/p' <<<"$line")
      tokens=$(sed -n 's/.*(\([0-9]*\) tokens).*/\1/p' <<<"$line")
      # The same checkpoint in ../shared/reference/models.py (strict load), on the same blocks.
      read -r ref ref_tokens < <(score --convlm-run "$run" --vocab "$vocab")
      [ -n "${ref_tokens:-}" ] || { echo "error: the reference could not score $run" >&2; exit 1; }
      [ "$ref_tokens" = "$tokens" ] || { echo "error: convlm scored $tokens tokens, the reference $ref_tokens" >&2; exit 1; }
      report "$model" "$budget" "$wall" "$steps" "$loss" "$tokens" "$ref"
    fi
  done
done
echo "every model is scored on the same held-out ids: the tokens column must agree"
