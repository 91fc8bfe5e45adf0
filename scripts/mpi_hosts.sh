#!/usr/bin/env bash
# Two network hosts on one Linux machine, for MPI across hosts (tests/mpi_hosts.rs,
# docs/distributed.md): two network namespaces joined by a veth pair, each with its own
# address, host name and private folder, speaking real TCP to each other. Needs root and
# iproute2 (`ip`, `tc`), util-linux (`unshare`, `mount`).
#
#   mpi_hosts.sh up DIR                 make the hosts; DIR (new or empty) keeps their state:
#                                       hosts.env, hostfile, rankfile, h1/ and h2/ (each
#                                       host's own files)
#   mpi_hosts.sh down DIR               end every process on the hosts and remove them
#   mpi_hosts.sh exec DIR h1|h2 CMD...  run CMD on a host, which sees its own folder at DIR/host
#   mpi_hosts.sh mpirun DIR ARGS...     mpirun on h1, a rank on each host (TCP on the veth only)
#   mpi_hosts.sh agent ADDRESS CMD...   the rsh agent mpirun starts its daemon on h2 with
#   mpi_hosts.sh link DIR up|down       connect or cut the link (h2's end)
#   mpi_hosts.sh shape DIR RATE [DELAY] shape both ends: RATE like 1gbit, DELAY like 1ms
#                                       (netem when the kernel has it, else tbf, rate only)
#   mpi_hosts.sh unshape DIR
#   mpi_hosts.sh pids DIR               processes on either host (none printed: none left)
#   mpi_hosts.sh clean                  remove hosts left by runs whose owner process is gone
#
# Everything it touches is inside its own namespaces, named `cvlmh-<owner pid>-<random>-1|2`:
# it refuses any other name, and changes no address, link or qdisc of the machine itself.
# `up` takes the owner from $MPI_HOSTS_OWNER (the test's pid; else its parent's) so that a
# later `clean` can tell a leftover of a killed run from hosts in use.
set -euo pipefail

PREFIX=cvlmh
SUBNET=10.77.0.0/24
ADDR=(10.77.0.1 10.77.0.2)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "mpi_hosts.sh: $*" >&2
  exit 1
}

# Refuses a namespace that is not one of this harness's.
ours() {
  [[ "$1" =~ ^${PREFIX}-[0-9]+-[0-9a-f]{6}-[12]$ ]] || die "refusing to touch \`$1\`: not a namespace of this harness"
}

# Reads DIR/hosts.env (NS1, NS2, DIR) and checks it names this harness's namespaces.
load() {
  [ -n "${1:-}" ] || die "no state folder given"
  [ -f "$1/hosts.env" ] || die "$1 holds no hosts (no hosts.env)"
  # shellcheck disable=SC1091
  source "$1/hosts.env"
  ours "$NS1"
  ours "$NS2"
}

ns_of() {
  case "$1" in
    h1 | "${ADDR[0]}") echo "$NS1" ;;
    h2 | "${ADDR[1]}") echo "$NS2" ;;
    *) die "unknown test host \`$1\` (h1, h2, ${ADDR[0]} or ${ADDR[1]})" ;;
  esac
}

# Kills every process of namespace $1 (this harness's only), by pid.
kill_all_in() {
  ours "$1"
  local pids
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(ip netns pids "$1" 2>/dev/null || true)"
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  echo "mpi_hosts.sh: processes still in $1: $pids" >&2
}

remove() {
  ours "$1"
  ip netns list | grep -qw "^$1" || return 0
  kill_all_in "$1"
  ip netns del "$1" 2>/dev/null || true
}

cmd_clean() {
  local ns owner
  while read -r ns _; do
    [[ "$ns" =~ ^${PREFIX}-([0-9]+)-[0-9a-f]{6}-[12]$ ]] || continue
    owner="${BASH_REMATCH[1]}"
    if ! kill -0 "$owner" 2>/dev/null; then
      echo "mpi_hosts.sh: removing $ns, left by process $owner" >&2
      remove "$ns"
    fi
  done < <(ip netns list)
}

cmd_up() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: up DIR"
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  command -v unshare >/dev/null || die "needs util-linux (unshare)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/hosts.env" ] || die "$dir holds hosts already"
  cmd_clean
  local owner="${MPI_HOSTS_OWNER:-$PPID}" id
  id="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  NS1="$PREFIX-$owner-$id-1"
  NS2="$PREFIX-$owner-$id-2"
  ours "$NS1"
  ours "$NS2"
  printf 'NS1=%s\nNS2=%s\nDIR=%s\n' "$NS1" "$NS2" "$dir" >"$dir/hosts.env"
  ip netns add "$NS1"
  ip netns add "$NS2" || { remove "$NS1"; die "could not make $NS2"; }
  # Made inside the namespaces: the pair never appears on the machine itself.
  if ! ip link add v1 netns "$NS1" type veth peer name v2 netns "$NS2" ||
    ! ip -n "$NS1" addr add "${ADDR[0]}/24" dev v1 || ! ip -n "$NS2" addr add "${ADDR[1]}/24" dev v2 ||
    ! ip -n "$NS1" link set lo up || ! ip -n "$NS2" link set lo up ||
    ! ip -n "$NS1" link set v1 up || ! ip -n "$NS2" link set v2 up; then
    remove "$NS1"
    remove "$NS2"
    die "could not connect the hosts"
  fi
  mkdir -p "$dir/h1" "$dir/h2" "$dir/host"
  printf '%s slots=1\n%s slots=1\n' "${ADDR[0]}" "${ADDR[1]}" >"$dir/hostfile"
  # Both hosts are this machine: without a rankfile each rank would be bound to the first
  # core of its "host", both to the same core.
  local second=1
  [ "$(nproc)" -gt 1 ] || second=0
  printf 'rank 0=%s slot=0\nrank 1=%s slot=%s\n' "${ADDR[0]}" "${ADDR[1]}" "$second" >"$dir/rankfile"
  echo "$dir"
}

cmd_down() {
  load "${1:-}"
  remove "$NS1"
  remove "$NS2"
  rm -f "$DIR/hosts.env"
}

# Runs "$@" on host $2 of state $1: in its namespace, under its own host name, with its
# own folder mounted at DIR/host (a mount seen by that host's processes only).
cmd_exec() {
  load "${1:-}"
  local ns host
  ns="$(ns_of "${2:-}")"
  host="${ns%-[12]}-h${ns##*-}"
  local view="$DIR/h${ns##*-}"
  shift 2
  [ "$#" -gt 0 ] || die "usage: exec DIR h1|h2 CMD..."
  # `ip netns exec` gives the command a mount namespace of its own already.
  exec ip netns exec "$ns" unshare --uts -- /bin/sh -c \
    'hostname "$1" && mount --bind "$2" "$3" && shift 3 && exec "$@"' sh "$host" "$view" "$DIR/host" "$@"
}

# OpenMPI's rsh agent: `agent ADDRESS CMD...` runs the shell command CMD on that host, as ssh
# would (CONVLM_HOSTS_DIR names the state; `mpirun` below sets it).
cmd_agent() {
  local address="${1:-}"
  shift || true
  [ -n "${CONVLM_HOSTS_DIR:-}" ] || die "agent: CONVLM_HOSTS_DIR is not set"
  cmd_exec "$CONVLM_HOSTS_DIR" "$address" /bin/sh -c "$*"
}

# One rank on each host, bound to cores of its own (DIR/rankfile); TCP only, on the veth only. The daemons probe an idle connection after KEEPALIVE seconds
# (`time interval probes`, default `2 1 3`: a cut link is noticed in about 5 s), which must
# be shorter than the ranks' own limit (CONVLM_MPI_TIMEOUT): see docs/distributed.md.
cmd_mpirun() {
  load "${1:-}"
  shift
  export CONVLM_HOSTS_DIR="$DIR"
  local keepalive
  read -r -a keepalive <<<"${MPI_HOSTS_KEEPALIVE:-2 1 3}"
  [ "${#keepalive[@]}" = 3 ] || die "MPI_HOSTS_KEEPALIVE: three numbers, \`time interval probes\`"
  cmd_exec "$DIR" h1 mpirun --allow-run-as-root --hostfile "$DIR/hostfile" --rankfile "$DIR/rankfile" \
    --mca plm_rsh_agent "$HERE/mpi_hosts.sh agent" \
    --mca btl tcp,self --mca btl_tcp_if_include "$SUBNET" --mca oob_tcp_if_include "$SUBNET" \
    --mca oob_tcp_keepalive_time "${keepalive[0]}" --mca oob_tcp_keepalive_intvl "${keepalive[1]}" \
    --mca oob_tcp_keepalive_probes "${keepalive[2]}" "$@"
}

cmd_link() {
  load "${1:-}"
  case "${2:-}" in
    up | down) ip -n "$NS2" link set v2 "$2" ;;
    *) die "usage: link DIR up|down" ;;
  esac
}

cmd_shape() {
  load "${1:-}"
  local rate="${2:-}" delay="${3:-}"
  [ -n "$rate" ] || die "usage: shape DIR RATE [DELAY]"
  local ends=("$NS1 v1" "$NS2 v2") end
  for end in "${ends[@]}"; do
    set -- $end
    if [ -n "$delay" ]; then
      tc -n "$1" qdisc replace dev "$2" root netem rate "$rate" delay "$delay" limit 100000 ||
        die "netem is not available in this kernel (sch_netem): shape without a delay"
    else
      # A bucket of at least 1 ms at the rate, and of 64 KB packets (veth segmentation offload).
      tc -n "$1" qdisc replace dev "$2" root tbf rate "$rate" burst "$(burst "$rate")" latency 50ms
    fi
  done
  tc -n "$NS1" qdisc show dev v1
}

# Bytes of 1 ms at rate $1 (like 1gbit, 10gbit, 500mbit), at least 256 KB.
burst() {
  local n="${1%[gGmMkK]bit}" unit="${1: -4:1}" bits
  case "$unit" in
    g | G) bits=$((n * 1000000000)) ;;
    m | M) bits=$((n * 1000000)) ;;
    k | K) bits=$((n * 1000)) ;;
    *) die "rate \`$1\`: write it like 1gbit, 500mbit" ;;
  esac
  local b=$((bits / 8 / 1000))
  [ "$b" -ge 262144 ] || b=262144
  echo "$b"
}

cmd_unshape() {
  load "${1:-}"
  tc -n "$NS1" qdisc del dev v1 root 2>/dev/null || true
  tc -n "$NS2" qdisc del dev v2 root 2>/dev/null || true
}

cmd_pids() {
  load "${1:-}"
  local ns pid
  for ns in "$NS1" "$NS2"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      echo "$ns $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
    done
  done
}

command="${1:-}"
shift || true
case "$command" in
  up | down | exec | mpirun | agent | link | shape | unshape | pids | clean) "cmd_$command" "$@" ;;
  *) sed -n '2,24p' "$0" >&2 && exit 2 ;;
esac
