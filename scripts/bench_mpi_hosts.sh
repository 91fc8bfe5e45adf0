#!/usr/bin/env bash
# Data-parallel training over a shaped link between two hosts (issue #31, docs/distributed.md
# "Measured across two hosts"): the hosts of scripts/mpi_hosts.sh, one rank on each, TCP
# over their veth link, for W1 (`--config reviews-bpe-cnn` on tinyshakespeare, BPE-5000) and
# W2 (`--config names-dilated` on names). As root:
#
#   scripts/bench_mpi_hosts.sh [ROUNDS] [WORK_DIR]     (default 2 rounds, a fresh folder)
#
# Each round runs every setting once, in turn (interleaved, so that a busy minute hits all of
# them): one process with 2 threads on host 1; the two hosts with the link as it is (a veth:
# memory speed); shaped to 10 Gbit/s and to 1 Gbit/s; and with netem, when the kernel has it,
# 1 Gbit/s and 10 Gbit/s with 1 ms of delay each way. Prints the median step time and
# all-reduce wait (rank 0's `step_ms` and `allreduce_ms` in metrics.jsonl, after 5 warm-up
# steps) of each run. Both hosts share this machine's cores: on a 2-core machine each rank
# has one core of its own only when nothing else runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/convlm-bench-hosts.XXXXXX")}
SHARED="$(cd ../shared/data && pwd)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q --features mpi
BIN="$(cd "$CARGO_TARGET_DIR/release" && pwd)/convlm"
HOSTS=scripts/mpi_hosts.sh
W1_STEPS=${W1_STEPS:-30}
W2_STEPS=${W2_STEPS:-400}

STATE="$WORK/hosts"
export MPI_HOSTS_OWNER=$$
trap '$HOSTS down "$STATE" >/dev/null 2>&1 || true' EXIT
$HOSTS up "$STATE" >/dev/null
VIEW="$STATE/host"

# Each host holds its own copy of both corpora, prepared once.
[ -f "$WORK/w1/corpus.json" ] || $BIN prepare --data "$SHARED/tinyshakespeare.txt" --tokenizer bpe --vocab-size 5000 --out "$WORK/w1" >/dev/null
[ -f "$WORK/w2/corpus.json" ] || $BIN prepare --data "$SHARED/names.txt" --dataset lines --out "$WORK/w2" >/dev/null
for h in h1 h2; do
  rm -rf "${STATE:?}/$h/w1" "${STATE:?}/$h/w2"
  cp -r "$WORK/w1" "$WORK/w2" "$STATE/$h/"
done

# Median of `key` over the step records after the first 5, in metrics.jsonl $1.
median() {
  grep -o "\"$2\":[0-9.e+-]*" "$1" | tail -n +6 | cut -d: -f2 | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run LABEL WORKLOAD SHAPE: one training run, its medians printed.
run() {
  local label=$1 workload=$2 shape=$3 out="$VIEW/runs/$1-$2" config data steps
  case "$workload" in
    W1) config=reviews-bpe-cnn data="$VIEW/w1" steps=$W1_STEPS ;;
    W2) config=names-dilated data="$VIEW/w2" steps=$W2_STEPS ;;
  esac
  local train=(train --config "$config" --data "$data" --steps "$steps" --eval-every 1000000 -q --force --out "$out")
  $HOSTS unshape "$STATE"
  case "$shape" in
    one) $HOSTS exec "$STATE" h1 "$BIN" "${train[@]}" --threads 2 >/dev/null ;;
    *)
      [ "$shape" = veth ] || $HOSTS shape "$STATE" $shape >/dev/null
      $HOSTS mpirun "$STATE" -np 2 -x CONVLM_MPI_TIMEOUT=600 "$BIN" "${train[@]}" --threads 1 >/dev/null
      ;;
  esac
  local metrics="$STATE/h1/runs/$label-$workload/metrics.jsonl"
  printf '%-3s %-22s step %9s ms   all-reduce wait %9s ms\n' "$workload" "$label" "$(median "$metrics" step_ms)" "$(median "$metrics" allreduce_ms)"
}

SETTINGS=("one-process-2-threads:one" "2-hosts-veth:veth" "2-hosts-10gbit:10gbit" "2-hosts-1gbit:1gbit")
if $HOSTS shape "$STATE" 1gbit 1ms >/dev/null 2>&1; then
  SETTINGS+=("2-hosts-1gbit-1ms:1gbit 1ms" "2-hosts-10gbit-1ms:10gbit 1ms")
else
  echo "netem is not available in this kernel (no sch_netem): the link is shaped by rate only (tbf), without delay"
fi
$HOSTS unshape "$STATE"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  for workload in W1 W2; do
    for setting in "${SETTINGS[@]}"; do
      run "${setting%%:*}" "$workload" "${setting#*:}"
    done
  done
done
