#!/usr/bin/env bash
# Data-plane comparison: x0tta6bl4 against wireguard-go, Nebula and Yggdrasil and the raw veth, all in
# one run on this machine. wireguard-go and Nebula are the newest releases, built from their sources,
# in ../shared/peers (PEERS=DIR to use others; Debian's packages are the fallback where it is absent);
# Yggdrasil is Debian's.
#
# For every system the script builds fresh network namespaces joined by veth pairs (underlay
# 10.201.0.0/16, only inside namespaces it creates), starts the two (or three) daemons with their
# TUN devices, and runs from namespace A: iperf3 TCP with 1 and 4 streams, iperf3 UDP (-b 0, 1200-byte
# datagrams, receiver goodput), and ping (50 echoes, 20 ms apart). It also records, per system, the daemons' CPU
# per Gbit/s and RSS idle and under load (sum over the daemons), and for x0tta6bl4 the link
# handshake latency. A second section runs a 3-node chain A - B - C (B relays; it does not forward IP)
# for x0tta6bl4 and Yggdrasil. One table at the end gives every figure and x0tta6bl4's ratio.
#
#   sudo bench/throughput.sh                 # everything, about 4 minutes
#   DURATION=10 SYSTEMS="x0tta6bl4 yggdrasil" CHAIN=0 sudo -E bench/throughput.sh
#   NO_APT=1 ...                             # skip apt-get (packages already installed)
#   X6_BIN=/path/to/x0tta6bl4 ...            # use this binary instead of building one
#   ROUNDS=3 ...                             # repeat every system that often, interleaved (even
#                                            # rounds run the systems in reverse order, so a drift of
#                                            # the machine's speed favours none); the table gives each
#                                            # figure's median over the rounds, and a last section our
#                                            # ratio to each peer within each round
#   SYSTEMS="x0tta6bl4 x0tta6bl4-ebpf" CHAIN=0 ROUNDS=20 DURATION=10 ...
#                                            # the cost of eBPF observation (docs/ebpf.md): the same
#                                            # nodes with ebpf: {enabled: true}; its ratio column is
#                                            # off / on, and a last section gives every round's pair,
#                                            # the median on/off ratios of throughput and CPU per
#                                            # Gbit/s with a sign-test confidence interval, the load
#                                            # average, and each program's own cost
#   FLOWS_OUT=DIR ...                        # with x0tta6bl4-ebpf: save `x0tta6bl4 flows --once` and the
#                                            # kernel metrics of node a, taken halfway through a TCP run
#
# Needs root, /dev/net/tun, Go (GOTOOLCHAIN=auto) and Debian's apt. Cleans up on exit.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
root=$PWD

DURATION=${DURATION:-5}
SYSTEMS=${SYSTEMS-"raw x0tta6bl4 wireguard-go nebula yggdrasil"}
CHAIN_SYSTEMS=${CHAIN_SYSTEMS-"x0tta6bl4 yggdrasil"}
CHAIN=${CHAIN:-1}
ROUNDS=${ROUNDS:-1}   # on a small VM one 5 s test can land 20 % high or low; medians of rounds are steadier
MTU=${MTU:-1420}      # tunnel MTU for wireguard-go and Nebula (Yggdrasil keeps its default)
# x0tta6bl4 uses one MTU for every destination, and a packet to a non-neighbour carries two session
# layers plus the routed header (100 bytes): 1500 - 28 (IPv4, UDP) - 100 = 1372 fits the veth unfragmented.
X6_MTU=${X6_MTU:-1372}
UDP_LEN=1200          # UDP datagram size; fits every tunnel's MTU

# The newest peers go first on PATH: the bar is the newest release, not Debian's years-old one.
PEERS=${PEERS:-$root/../shared/peers}
if [ -x "$PEERS/nebula" ] && [ -x "$PEERS/wireguard-go" ]; then
  PEERS=$(cd "$PEERS" && pwd)
  export PATH="$PEERS:$PATH"
else
  PEERS=""
fi

die() { echo "throughput.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

# ---------------------------------------------------------------------------------------------------
# Packages: the peers come from Debian; nothing of theirs is copied into the repository.
if [ -z "${NO_APT:-}" ]; then
  pkgs=(iperf3 iproute2 iputils-ping jq procps wireguard-go wireguard-tools nebula yggdrasil bpftool)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
    for p in "${missing[@]}"; do
      if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        timeout 300 apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || log "WARNING: apt-get install $p failed"
      else
        log "WARNING: package $p is not available from apt; its system is skipped"
      fi
    done
  fi
fi
for t in iperf3 ip jq ping; do command -v $t >/dev/null || die "$t is missing"; done
[ -n "${X6_BIN:-}" ] || command -v go >/dev/null || die "go is missing"

tmp=$(mktemp -d /tmp/x6bench.XXXXXX)
P="xb$$"   # namespace and interface prefix, unique per run
declare -a PIDS=()

cleanup() {
  set +e
  [ -f "$tmp/pids" ] && mapfile -t -O "${#PIDS[@]}" PIDS <"$tmp/pids"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^${P}" ); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns"
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${X6_BIN:-}" ]; then
  X6=$X6_BIN   # a binary built beforehand
else
  log "building x0tta6bl4"
  GOTOOLCHAIN=auto go build -o "$tmp/x0tta6bl4" ./cmd/x0tta6bl4 || die "go build failed"
  X6=$tmp/x0tta6bl4
fi

# ---------------------------------------------------------------------------------------------------
# Namespaces. netns NAME creates $P$NAME; link A B K joins them with a veth, 10.201.K.1 / 10.201.K.2.
ns() { echo "$P$1"; }
mkns() { ip netns add "$(ns "$1")"; ip -n "$(ns "$1")" link set lo up; }
link() {
  local a=$1 b=$2 k=$3
  ip link add "${P}l${k}a" type veth peer name "${P}l${k}b"
  ip link set "${P}l${k}a" netns "$(ns "$a")" name "u${k}"
  ip link set "${P}l${k}b" netns "$(ns "$b")" name "u${k}"
  ip -n "$(ns "$a")" addr add "10.201.$k.1/24" dev "u$k"
  ip -n "$(ns "$b")" addr add "10.201.$k.2/24" dev "u$k"
  ip -n "$(ns "$a")" link set "u$k" up
  ip -n "$(ns "$b")" link set "u$k" up
}
topology() { # topology 2|3
  local n
  for n in a b c; do ip netns del "$(ns $n)" 2>/dev/null || true; done
  mkns a; mkns b; link a b 1
  if [ "$1" = 3 ]; then mkns c; link b c 2; fi
}
teardown() {
  [ -f "$tmp/pids" ] && mapfile -t -O "${#PIDS[@]}" PIDS <"$tmp/pids" && rm -f "$tmp/pids"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  PIDS=()
  rm -f "$tmp/progids"
  local n
  for n in a b c; do
    ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$(ns $n)" 2>/dev/null || true; done
}
bg() { # bg NS LOG CMD... : start a daemon in a namespace, record its pid
  local n=$1 logf=$2; shift 2
  ip netns exec "$(ns "$n")" "$@" >"$logf" 2>&1 &
  PIDS+=($!)
  echo $! >>"$tmp/pids"   # for the parent's teardown when a system's subshell fails
}

# ---------------------------------------------------------------------------------------------------
# Measurements. Each round's results go to $tmp/round/<round>/<key>/<field>; the medians over the
# rounds to $tmp/res/<key>/<field>, which the table reads.
ROUND=1
put() { mkdir -p "$tmp/round/$ROUND/$1"; echo "$3" >"$tmp/round/$ROUND/$1/$2"; }
get() { cat "$tmp/res/$1/$2" 2>/dev/null || echo "n/a"; }
got() { cat "$tmp/round/$ROUND/$1/$2" 2>/dev/null || echo "n/a"; } # this round's figure
median() { # stdin: one value a line; prints the median of the numeric ones with as many decimals as they
  # have, else the first other value (an "a/b" figure), else n/a
  awk '
    /^-?[0-9.]+$/ { v[n++] = $1 + 0; p = index($1, "."); if (p && length($1) - p > d) d = length($1) - p; next }
    { other = other == "" ? $0 : other }
    END {
      if (n == 0) { print (other == "" ? "n/a" : other); exit }
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      printf "%.*f\n", d, (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
    }'
}
medians() { # every key/field: its median over the rounds
  local f key field
  for f in "$tmp"/round/*/*/*; do
    [ -e "$f" ] || continue
    key=$(basename "$(dirname "$f")"); field=$(basename "$f")
    [ -e "$tmp/res/$key/$field" ] && continue
    mkdir -p "$tmp/res/$key"
    cat "$tmp"/round/*/"$key"/"$field" | median >"$tmp/res/$key/$field"
  done
}

proc_sum() { # proc_sum FILE AWK: the sum over the recorded daemons of what AWK prints from /proc/PID/FILE
  local s=0 pid
  for pid in "${PIDS[@]}"; do
    [ -r /proc/$pid/$1 ] || continue
    s=$((s + $(awk "$2" /proc/$pid/$1)))
  done
  echo $s
}
cpu_ticks() { proc_sum stat '{print $14+$15}'; } # total utime+stime
# busy_ticks: the whole machine's busy time (user, nice, system, irq, softirq): unlike the daemons'
# figure it includes stack and program work done in other contexts (iperf3's own sends, softirqs)
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
rss_kb() { proc_sum status '/^VmRSS/{print $2}'; }

wait_ping() { # wait_ping FROM ADDR SECONDS
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    ip netns exec "$(ns "$1")" ping -c1 -W1 "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

iperf() { # iperf FROM TO ADDR ARGS... : prints the client's JSON
  local from=$1 to=$2 addr=$3; shift 3
  ip netns exec "$(ns "$to")" timeout $((DURATION + 20)) iperf3 -s -1 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  timeout $((DURATION + 15)) ip netns exec "$(ns "$from")" iperf3 -c "$addr" -t "$DURATION" -J "$@" || true
  wait $srv 2>/dev/null || true
}

gbit() { if [ -n "$1" ]; then printf '%.2f' "$1"; else echo "n/a"; fi; }

measure() { # measure KEY FROM TO ADDR
  local key=$1 from=$2 to=$3 addr=$4 j t0 c0 c1 g
  local hz; hz=$(getconf CLK_TCK)
  put "$key" load "$(cut -d' ' -f1 /proc/loadavg)" # the machine's 1-minute load average as the system starts
  put "$key" rss_idle "$(( $(rss_kb) / 1024 ))"
  # ping first, on an idle tunnel
  local p; p=$(ip netns exec "$(ns "$from")" ping -c 50 -i 0.02 -q "$addr" 2>/dev/null | awk -F/ '/^rtt|^round-trip/{print $5}' || true)
  put "$key" rtt "${p:-n/a}"
  # TCP, one stream; CPU of the daemons over the test
  local b0 b1
  c0=$(cpu_ticks); b0=$(busy_ticks); t0=$(date +%s.%N)
  j=$(iperf "$from" "$to" "$addr")
  c1=$(cpu_ticks); b1=$(busy_ticks)
  g=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e9' <<<"$j" 2>/dev/null || true)
  put "$key" tcp1 "$(gbit "$g")"
  if [ -n "$g" ] && [ "${#PIDS[@]}" -gt 0 ]; then
    put "$key" cpu "$(awk -v c=$((c1 - c0)) -v hz="$hz" -v t0="$t0" -v t1="$(date +%s.%N)" -v g="$g" \
      'BEGIN{ if (g>0) printf "%.2f", (c/hz)/(t1-t0)/g; else print "n/a" }')"
    put "$key" syscpu "$(awk -v c=$((b1 - b0)) -v hz="$hz" -v t0="$t0" -v t1="$(date +%s.%N)" -v g="$g" \
      'BEGIN{ if (g>0) printf "%.2f", (c/hz)/(t1-t0)/g; else print "n/a" }')"
  fi
  # TCP, four streams; RSS sampled under load
  ( sleep $((DURATION / 2 + 1)); rss_kb >"$tmp/rss_load" ) &
  local sampler=$!
  j=$(iperf "$from" "$to" "$addr" -P 4)
  wait $sampler 2>/dev/null || true
  put "$key" rss_load "$(( $(cat "$tmp/rss_load" 2>/dev/null || echo 0) / 1024 ))"
  g=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e9' <<<"$j" 2>/dev/null || true)
  put "$key" tcp4 "$(gbit "$g")"
  # UDP, as fast as the sender goes; goodput at the receiver
  j=$(iperf "$from" "$to" "$addr" -u -b 0 -l $UDP_LEN)
  g=$(jq -r '.end.sum | select(.seconds > 0) | (.packets - .lost_packets) * '$UDP_LEN' * 8 / .seconds / 1e9' <<<"$j" 2>/dev/null || true)
  put "$key" udp "$(gbit "$g")"
  local loss; loss=$(jq -r '.end.sum.lost_percent // empty' <<<"$j" 2>/dev/null || true)
  [ -n "$loss" ] && put "$key" udp_loss "$(printf '%.0f' "$loss")"
  [ "${#PIDS[@]}" -gt 0 ] || { put "$key" rss_idle "-"; put "$key" rss_load "-"; put "$key" cpu "-"; }
  log "$key: tcp1 $(got "$key" tcp1) tcp4 $(got "$key" tcp4) udp $(got "$key" udp) Gbit/s, rtt $(got "$key" rtt) ms"
}

# ---------------------------------------------------------------------------------------------------
# Systems. setup_<system> N starts it on the topology of N nodes and sets DST (the address of the last
# node as seen from a).

setup_raw() {
  [ "$1" = 2 ] || die "raw: single hop only"
  DST=10.201.1.2
}

setup_x0tta6bl4() {
  local n=$1 d=$tmp/x6 i
  local names=(a b c)
  rm -rf "$d"; mkdir -p "$d"
  "$X6" ca init --dir "$d/ca" --trust-domain bench.test --groups bench >/dev/null
  for ((i = 0; i < n; i++)); do
    local me=${names[$i]}
    "$X6" ca issue --dir "$d/ca" --name "$me" --groups bench --out "$d" >/dev/null
  done
  for ((i = 0; i < n; i++)); do
    local me=${names[$i]}
    {
      echo "key: $me.key"; echo "cert: $me.crt"; echo "ca: [ca/ca.crt]"; echo "listen: 0.0.0.0:7946"
      # metrics are read only when scraped; both variants listen, so eBPF on and off differ in nothing else
      echo "admin_socket: $me.sock"; echo "log_level: info"; echo "metrics_listen: 127.0.0.1:9474"
      if [ -n "${EBPF:-}" ]; then echo "ebpf: {enabled: true}"; fi
      echo "device: {mode: tun, name: x6, mtu: $X6_MTU}"
      if [ "$i" -gt 0 ]; then echo "peers:"; echo "  - {address: 10.201.$i.1:7946, cert: ${names[$((i - 1))]}.crt}"; fi
      echo "firewall:"
      echo "  inbound: [{proto: any, port: any, group: bench}]"
      echo "  outbound: [{proto: any, port: any, group: bench}]"
    } >"$d/$me.yaml"
  done
  for ((i = 0; i < n; i++)); do
    bg "${names[$i]}" "$d/${names[$i]}.log" "$X6" node --config "$d/${names[$i]}.yaml"
    sleep 0.2
  done
  local last=${names[$((n - 1))]}
  for _ in $(seq 100); do
    # (|| true: until the node has made its device, ip fails, and under set -e and pipefail that
    # failure would end the system's run without a word)
    DST=$(ip -n "$(ns "$last")" -6 addr show dev x6 scope global 2>/dev/null | awk '/inet6 fd74/{print $2}' | cut -d/ -f1 || true)
    [ -n "$DST" ] && break; sleep 0.1
  done
  [ -n "$DST" ] || die "x0tta6bl4: no overlay address on $last"
  if [ -n "${EBPF:-}" ]; then
    for ((i = 0; i < n; i++)); do
      for _ in $(seq 50); do grep -q 'eBPF observation' "$d/${names[$i]}.log" && break; sleep 0.1; done
      grep -q 'eBPF observation on' "$d/${names[$i]}.log" || die "x0tta6bl4-ebpf: $(grep -m1 'eBPF observation' "$d/${names[$i]}.log")"
      # the ids of this run's programs: other x6_ programs on the machine (tests) are not ours to count
      "$X6" flows --socket "$d/${names[$i]}.sock" --json | jq -r '.program_ids[]' >>"$tmp/progids"
    done
  fi
  # link handshake latency: "node starting" to "link up" in b's log (b dials a)
  for _ in $(seq 100); do grep -q 'link up' "$d/b.log" && break; sleep 0.1; done
  local t0 t1
  t0=$(grep -m1 'node starting' "$d/b.log" | sed -n 's/^time=\([^ ]*\).*/\1/p' || true)
  t1=$(grep -m1 'link up' "$d/b.log" | sed -n 's/^time=\([^ ]*\).*/\1/p' || true)
  if [ -n "$t0" ] && [ -n "$t1" ]; then
    HANDSHAKE=$(awk -v a="$(date -d "$t0" +%s.%N)" -v b="$(date -d "$t1" +%s.%N)" 'BEGIN{printf "%.1f", (b-a)*1000}')
  fi
}

# The same nodes with kernel-side observation on: the programs of both nodes are attached.
setup_x0tta6bl4-ebpf() { EBPF=1 setup_x0tta6bl4 "$@"; }

# ours: this run's programs in bpftool's JSON list (ids recorded by setup_x0tta6bl4).
ours() { jq --slurpfile ids "$tmp/progids" 'map(select(.id as $i | $ids | index($i)))'; }
# bpf_ns: the run time of our programs so far (kernel.bpf_stats_enabled counts it).
bpf_ns() {
  bpftool -j prog show 2>/dev/null | ours | jq '[.[] | .run_time_ns // 0] | add // 0'
}
# bpf_progs: per program name (both nodes summed), "name run_time_ns run_cnt", one a line.
bpf_progs() {
  bpftool -j prog show 2>/dev/null | ours | jq -r 'group_by(.name)[]
    | "\(.[0].name) \(map(.run_time_ns // 0) | add) \(map(.run_cnt // 0) | add)"'
}

# kernel_view KEY NODE: what an operator sees in the middle of a TCP run: `x0tta6bl4 flows --once` over
# the node's admin socket and its kernel-side metrics, saved under FLOWS_OUT.
kernel_view() {
  local key=$1 node=$2
  mkdir -p "$FLOWS_OUT"
  "$X6" flows --socket "$tmp/x6/$node.sock" --once >"$FLOWS_OUT/$key-flows.txt" 2>&1 || true
  ip netns exec "$(ns "$node")" curl -s 127.0.0.1:9474/metrics 2>/dev/null | grep '^x0tta6bl4_kernel' >"$FLOWS_OUT/$key-metrics.txt" || true
}

# bpf_cpu KEY FROM ADDR: one more TCPx1 run with the kernel's program statistics on, giving the
# programs' own CPU (cores per Gbit/s). Statistics cost a clock read per run, so the throughput
# figures come from the runs without them.
bpf_cpu() {
  local key=$1 from=$2 addr=$3 was n0 n1 t0 j g
  command -v bpftool >/dev/null || { log "no bpftool: no eBPF CPU figure"; return 0; }
  was=$(sysctl -n kernel.bpf_stats_enabled)
  sysctl -qw kernel.bpf_stats_enabled=1
  n0=$(bpf_ns); bpf_progs >"$tmp/progs0"; t0=$(date +%s.%N)
  local view=""
  if [ -n "${FLOWS_OUT:-}" ]; then (sleep "$(awk -v d="$DURATION" 'BEGIN{print d/2}')"; kernel_view "$key" "$from") & view=$!; fi
  j=$(iperf "$from" b "$addr")
  n1=$(bpf_ns); bpf_progs >"$tmp/progs1"
  [ -z "$view" ] || wait "$view" || true
  sysctl -qw kernel.bpf_stats_enabled="$was"
  g=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e9' <<<"$j" 2>/dev/null || true)
  [ -n "$g" ] && put "$key" bpf_cpu "$(awk -v n=$((n1 - n0)) -v t0="$t0" -v t1="$(date +%s.%N)" -v g="$g" \
    'BEGIN{ if (g>0) printf "%.4f", n/1e9/(t1-t0)/g; else print "n/a" }')"
  # each program: runs and run time per Gbit of goodput, both nodes together
  if [ -n "$g" ]; then
    local gbits; gbits=$(awk -v g="$g" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN{print g*(t1-t0)}')
    join "$tmp/progs0" "$tmp/progs1" | while read -r name ns0 c0 ns1 c1; do
      put "$key" "prog_$name" "$(awk -v n=$((ns1 - ns0)) -v c=$((c1 - c0)) -v gb="$gbits" \
        'BEGIN{ printf "%.0f %.0f %.4f", c/gb, (c>0 ? n/c : 0), n/1e9/gb }')"
    done
  fi
  log "$key: eBPF programs $(got "$key" bpf_cpu) cores per Gbit/s"
}

setup_wireguard-go() {
  [ "$1" = 2 ] || die "wireguard-go: single hop only here"
  local d=$tmp/wg; rm -rf "$d"; mkdir -p "$d"
  umask 077
  for x in a b; do wg genkey >"$d/$x.key"; wg pubkey <"$d/$x.key" >"$d/$x.pub"; done
  for i in 1 2; do
    local me=a other=b; [ $i = 2 ] && me=b other=a
    local oi=$((3 - i))
    bg "$me" "$d/$me.log" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go -f "wg$me"
    for _ in $(seq 50); do ip -n "$(ns $me)" link show "wg$me" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$(ns $me)" wg set "wg$me" private-key "$d/$me.key" listen-port 51820 \
      peer "$(cat "$d/$other.pub")" allowed-ips "10.202.0.$oi/32" endpoint "10.201.1.$oi:51820"
    ip -n "$(ns $me)" addr add "10.202.0.$i/24" dev "wg$me"
    ip -n "$(ns $me)" link set "wg$me" mtu "$MTU" up
  done
  DST=10.202.0.2
}

setup_nebula() {
  [ "$1" = 2 ] || die "nebula: single hop only here"
  local d=$tmp/nebula; rm -rf "$d"; mkdir -p "$d"
  (cd "$d" && nebula-cert ca -name bench -out-crt ca.crt -out-key ca.key >/dev/null)
  for i in 1 2; do
    local me=a; [ $i = 2 ] && me=b
    local oi=$((3 - i))
    (cd "$d" && nebula-cert sign -ca-crt ca.crt -ca-key ca.key -name "$me" -ip "10.203.0.$i/24" -out-crt "$me.crt" -out-key "$me.key" >/dev/null)
    cat >"$d/$me.yml" <<EOF
pki: {ca: $d/ca.crt, cert: $d/$me.crt, key: $d/$me.key}
static_host_map: {"10.203.0.$oi": ["10.201.1.$oi:4242"]}
lighthouse: {am_lighthouse: false, interval: 60, hosts: []}
listen: {host: 0.0.0.0, port: 4242}
punchy: {punch: false}
tun: {disabled: false, dev: neb0, drop_local_broadcast: false, drop_multicast: false, tx_queue: 500, mtu: $MTU}
logging: {level: warning, format: text}
firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]
EOF
    bg "$me" "$d/$me.log" nebula -config "$d/$me.yml"
  done
  DST=10.203.0.2
}

setup_yggdrasil() {
  local n=$1 d=$tmp/ygg i me
  local names=(a b c)
  rm -rf "$d"; mkdir -p "$d"
  for ((i = 0; i < n; i++)); do
    local listen peers='[]'
    me=${names[$i]}
    # b listens on its links; a and c dial b (on the 2-node topology a listens and b dials)
    if [ "$n" = 2 ]; then
      if [ $i = 0 ]; then listen='["tcp://10.201.1.1:12345"]'; else listen='[]'; peers='["tcp://10.201.1.1:12345"]'; fi
    else
      case $me in
        a) listen='[]'; peers='["tcp://10.201.1.2:12345"]' ;;
        b) listen='["tcp://10.201.1.2:12345","tcp://10.201.2.1:12345"]' ;;
        c) listen='[]'; peers='["tcp://10.201.2.1:12345"]' ;;
      esac
    fi
    yggdrasil -genconf -json | jq --argjson l "$listen" --argjson p "$peers" \
      '.Listen=$l | .Peers=$p | .IfName="ygg0" | .AdminListen="none" | .MulticastInterfaces=[] | .InterfacePeers={}' \
      >"$d/$me.conf"
  done
  # listeners first: a refused dial is retried only after a back-off
  local order="a b"; [ "$n" = 3 ] && order="b a c"
  for me in $order; do
    bg "$me" "$d/$me.log" yggdrasil -useconffile "$d/$me.conf" -logto stdout
    sleep 0.3
  done
  local last=${names[$((n - 1))]}
  DST=$(yggdrasil -useconffile "$d/$last.conf" -address)
}

# run_system SYSTEM N KEY : set up, measure a -> last, tear down. Runs in a subshell so that one
# system's failure is reported and the others still run.
run_system() {
  local sys=$1 n=$2 key=$3 last=b
  [ "$n" = 3 ] && last=c
  log "== $sys ($n nodes)"
  topology "$n"
  DST="" HANDSHAKE=""
  "setup_$sys" "$n"
  [ -n "$DST" ] || die "$sys: no destination address"
  local t0; t0=$(date +%s%N)
  wait_ping a "$DST" 30 || { tail -n 20 "$tmp"/*/*.log 2>/dev/null >&2 || true; die "$sys: $DST unreachable after 30 s"; }
  put "$key" up "$(( ($(date +%s%N) - t0) / 1000000 ))"
  [ -n "$HANDSHAKE" ] && put "$key" handshake "$HANDSHAKE"
  sleep 0.5
  measure "$key" a "$last" "$DST"
  [ "$sys" != x0tta6bl4-ebpf ] || bpf_cpu "$key" a "$DST"
  if [ -n "${DEBUG_STATS:-}" ]; then # drops and retransmissions per namespace, for diagnosis
    for x in a b c; do
      ip netns list | grep -q "^$(ns $x)\b" || continue
      echo "--- $key $x: $(ip netns exec "$(ns $x)" nstat -az 2>/dev/null | awk '$2>0 && /UdpRcvbufErrors|UdpSndbufErrors|UdpInErrors|TcpRetransSegs|TCPLostRetransmit|IpReasmFails/{printf "%s=%s ", $1, $2}')" >&2
      ip -n "$(ns $x)" -s link 2>/dev/null | awk '/^[0-9]+:/{d=$2} /dropped/{getline; if ($4+0>0) printf "    %s dropped %s\n", d, $4}' >&2
    done
  fi
  teardown
}

# guarded SYSTEM N KEY: run_system, reporting a failure instead of stopping the whole run.
guarded() {
  set +e
  ( set -e; run_system "$@" )
  local rc=$?
  set -e
  [ $rc = 0 ] || { log "WARNING: $3 failed (exit $rc); its row says n/a"; teardown; }
}

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  [ "$ROUNDS" = 1 ] || log "=== round $ROUND of $ROUNDS"
  order=$SYSTEMS
  [ $((ROUND % 2)) = 1 ] || order=$(printf '%s\n' $SYSTEMS | tac | tr '\n' ' ')
  for sys in $order; do guarded "$sys" 2 "$sys"; done
  if [ "$CHAIN" = 1 ]; then
    for sys in $CHAIN_SYSTEMS; do guarded "$sys" 3 "chain-$sys"; done
  fi
done
medians

# ---------------------------------------------------------------------------------------------------
ratio() { # ratio OURS THEIRS
  awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0 > 0 && b+0 > 0) printf "%.2fx", a/b; else print "-" }'
}
ver() {
  case $1 in
    raw) echo "veth" ;;
    x0tta6bl4|x0tta6bl4-ebpf) if [ -n "${X6_BIN:-}" ]; then echo "X6_BIN"; else (cd "$root" && git describe --always --dirty 2>/dev/null) || echo "?"; fi ;;
    wireguard-go|nebula)
      if [ -n "$PEERS" ]; then # the commit the peers' README records
        awk -F'|' -v b="$1" '$2 ~ "^ *"b"[ ,]" { gsub(/ /, "", $4); print $4 " (src)" }' "$PEERS/README.md"
      else
        dpkg-query -W -f '${Version}' "$1" 2>/dev/null
      fi ;;
    yggdrasil) dpkg-query -W -f '${Version}' yggdrasil 2>/dev/null ;;
  esac
}
paired() { # paired PREFIX PEER: our ratio to PEER in each round, then the median of those ratios
  local prefix=$1 peer=$2 r line="" x1="" x4=""
  for ((r = 1; r <= ROUNDS; r++)); do
    local d=$tmp/round/$r a b c e
    a=$(cat "$d/${prefix}x0tta6bl4/tcp1" 2>/dev/null || true); b=$(cat "$d/$prefix$peer/tcp1" 2>/dev/null || true)
    c=$(cat "$d/${prefix}x0tta6bl4/tcp4" 2>/dev/null || true); e=$(cat "$d/$prefix$peer/tcp4" 2>/dev/null || true)
    local q1 q4; q1=$(ratio "$a" "$b"); q4=$(ratio "$c" "$e")
    line="$line r$r $q1/$q4"
    [ "$q1" = - ] || x1="$x1 ${q1%x}"; [ "$q4" = - ] || x4="$x4 ${q4%x}"
  done
  med() { local m; m=$(printf '%s\n' "$@" | grep . | median); [ "$m" = n/a ] && echo - || echo "${m}x"; }
  local where="single hop"; [ -z "$prefix" ] || where="chain"
  echo "  $where, $peer:$line; median $(med $x1) / $(med $x4)"
}
signci() { # stdin: one value a line; prints "median [low–high] coverage%": the median and the
  # distribution-free confidence interval of the sign test (order statistics k and n+1-k, the
  # narrowest pair whose coverage is at least 95 %; with fewer than 6 values, min and max, whose
  # coverage is below 95 % and printed as it is)
  sort -g | awk '
    /^-?[0-9.]+$/ { v[++n] = $1 + 0 }
    END {
      if (n == 0) { print "n/a"; exit }
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      c = 1; cdf = 0; k = 0           # cdf = P(Bin(n, 1/2) <= i - 1) before adding term i
      for (i = 0; i <= n; i++) {
        if (i > 0) c = c * (n - i + 1) / i
        if (cdf + c / 2 ^ n > 0.025) break
        cdf += c / 2 ^ n; k = i + 1
      }
      if (k < 1) { k = 1; cdf = 1 / 2 ^ n }
      else { cdf = 0; c = 1; for (i = 0; i < k; i++) { if (i > 0) c = c * (n - i + 1) / i; cdf += c / 2 ^ n } }
      printf "%.3f [%.3f–%.3f] %.1f%%\n", med, v[k], v[n + 1 - k], 100 * (1 - 2 * cdf)
    }'
}
ebpf_summary() { # every round's off/on pair, the median on/off ratios with their intervals, each program's cost
  local r d off on line x1="" x4="" xc="" xs="" q
  echo "eBPF observation, off and on in the same round (odd rounds run off first, even rounds on first):"
  printf '  %5s %11s %13s %13s %11s %11s | %7s %7s %7s %7s\n' round load "TCPx1 off->on" "TCPx4 off->on" "CPU/G" "machine/G" "on/off1" "on/off4" "CPU/G" "mach/G"
  for ((r = 1; r <= ROUNDS; r++)); do
    d=$tmp/round/$r; off=$d/x0tta6bl4; on=$d/x0tta6bl4-ebpf
    rd() { cat "$1" 2>/dev/null || echo n/a; }
    local q1 q4 qc qs
    q1=$(awk -v a="$(rd "$on/tcp1")" -v b="$(rd "$off/tcp1")" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.3f", a/b; else print "-" }')
    q4=$(awk -v a="$(rd "$on/tcp4")" -v b="$(rd "$off/tcp4")" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.3f", a/b; else print "-" }')
    qc=$(awk -v a="$(rd "$on/cpu")" -v b="$(rd "$off/cpu")" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.3f", a/b; else print "-" }')
    qs=$(awk -v a="$(rd "$on/syscpu")" -v b="$(rd "$off/syscpu")" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.3f", a/b; else print "-" }')
    printf '  %5s %11s %13s %13s %11s %11s | %7s %7s %7s %7s\n' "$r" "$(rd "$off/load")/$(rd "$on/load")" \
      "$(rd "$off/tcp1")->$(rd "$on/tcp1")" "$(rd "$off/tcp4")->$(rd "$on/tcp4")" "$(rd "$off/cpu")->$(rd "$on/cpu")" \
      "$(rd "$off/syscpu")->$(rd "$on/syscpu")" "$q1" "$q4" "$qc" "$qs"
    [ "$q1" = - ] || x1="$x1 $q1"; [ "$q4" = - ] || x4="$x4 $q4"; [ "$qc" = - ] || xc="$xc $qc"; [ "$qs" = - ] || xs="$xs $qs"
  done
  local c1 c4 cc cs
  c1=$(printf '%s\n' $x1 | signci); c4=$(printf '%s\n' $x4 | signci); cc=$(printf '%s\n' $xc | signci); cs=$(printf '%s\n' $xs | signci)
  echo "  median on/off [sign-test interval, coverage] over the rounds that completed both:"
  echo "    TCPx1 goodput: $c1;  TCPx4 goodput: $c4"
  echo "    daemons' CPU per Gbit/s: $cc;  the machine's CPU per Gbit/s: $cs"
  echo "    CPU per Gbit/s during TCPx1, median: both daemons off $(get x0tta6bl4 cpu), on $(get x0tta6bl4-ebpf cpu) cores;" \
    "the whole machine (meaningful only when nothing else runs) off $(get x0tta6bl4 syscpu), on $(get x0tta6bl4-ebpf syscpu) cores"
  # shown: the interval's low end is at least 0.970 and its coverage at least 95 %, for both
  local verdict
  verdict=$(printf '%s\n%s\n' "$c1" "$c4" | awk '
    { gsub(/[\[\]%]/, ""); split($2, a, "–"); if (!(a[1] + 0 >= 0.97 && $3 + 0 >= 95)) bad = 1 }
    END { print (NR == 2 && !bad) ? "shown" : "not shown" }')
  echo "    goal, at most 3 % less TCP goodput with eBPF on (for TCPx1 and TCPx4, an interval of at least 95 % coverage whose low end is >= 0.970): $verdict"
  echo "  each program's own cost (kernel.bpf_stats_enabled, both nodes; median over the rounds):"
  printf '    %-20s %12s %9s %14s\n' program "runs/Gbit" "ns/run" "cores/(Gbit/s)"
  local f name
  for f in "$tmp"/round/1/x0tta6bl4-ebpf/prog_*; do
    [ -e "$f" ] || continue
    name=${f##*/prog_}
    printf '    %-20s %12s %9s %14s\n' "$name" \
      "$(cat "$tmp"/round/*/x0tta6bl4-ebpf/prog_"$name" | awk '{print $1}' | median)" \
      "$(cat "$tmp"/round/*/x0tta6bl4-ebpf/prog_"$name" | awk '{print $2}' | median)" \
      "$(cat "$tmp"/round/*/x0tta6bl4-ebpf/prog_"$name" | awk '{print $3}' | median)"
  done
}
table() { # table SECTION_TITLE PREFIX SYSTEMS...
  local title=$1 prefix=$2; shift 2
  local us=${prefix}x0tta6bl4
  echo
  echo "$title"
  printf '%-22s %-16s %7s %7s %7s %6s %8s %9s %7s | %-23s\n' system version "TCPx1" "TCPx4" "UDP" "loss%" "RTT ms" "RSS MiB" "CPU/G" "x0tta6bl4 ratio x1/x4/UDP"
  printf '%-22s %-16s %7s %7s %7s %6s %8s %9s %7s | %-23s\n' "" "" "Gbit/s" "Gbit/s" "Gbit/s" "" "avg" "idle/load" "cores" ""
  for s in "$@"; do
    local k=$prefix$s r="-"
    [ -d "$tmp/res/$k" ] || { printf '%-22s %-16s %7s\n' "$s" "$(ver "$s" | cut -c1-16)" "failed/not run"; continue; }
    if [ "$k" != "$us" ]; then
      r="$(ratio "$(get "$us" tcp1)" "$(get "$k" tcp1)") / $(ratio "$(get "$us" tcp4)" "$(get "$k" tcp4)") / $(ratio "$(get "$us" udp)" "$(get "$k" udp)")"
    fi
    printf '%-22s %-16s %7s %7s %7s %6s %8s %9s %7s | %-23s\n' "$s" "$(ver "$s" | cut -c1-16)" \
      "$(get "$k" tcp1)" "$(get "$k" tcp4)" "$(get "$k" udp)" "$(get "$k" udp_loss)" "$(get "$k" rtt)" \
      "$(get "$k" rss_idle)/$(get "$k" rss_load)" "$(get "$k" cpu)" "$r"
  done
}

{
  echo
  echo "x0tta6bl4 data-plane comparison — $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), ${DURATION}s per test$([ "$ROUNDS" = 1 ] || echo ", medians of $ROUNDS rounds"), tunnel MTU $MTU (x0tta6bl4: $X6_MTU, Yggdrasil: its default)"
  table "Single hop (A -> B over one veth)" "" $SYSTEMS
  if [ "$CHAIN" = 1 ]; then
    table "3-node chain (A -> B -> C, B relays)" "chain-" $CHAIN_SYSTEMS
  fi
  echo
  echo "x0tta6bl4 link handshake (b start -> link up, over the veth): $(get x0tta6bl4 handshake) ms;" \
    "first ping reply after start: $(get x0tta6bl4 up) ms single hop, $(get chain-x0tta6bl4 up) ms chain (includes the end-to-end handshake)"
  for s in $CHAIN_SYSTEMS; do
    awk -v s="$s" -v a="$(get "$s" rtt)" -v b="$(get "chain-$s" rtt)" -v r="$(get raw rtt)" \
      'BEGIN{ if (a+0>0 && b+0>0) printf "%s: RTT %.3f ms single hop (%+.3f ms over raw veth), %.3f ms chain: %+.3f ms per added hop\n", s, a, a-r, b, b-a }'
  done
  if [ "$ROUNDS" -gt 1 ]; then
    echo "Paired ratios, x0tta6bl4 / peer within each round (TCPx1 / TCPx4), and their median:"
    for s in $SYSTEMS; do [ "$s" = x0tta6bl4 ] || [ "$s" = raw ] || paired "" "$s"; done
    [ "$CHAIN" = 1 ] && for s in $CHAIN_SYSTEMS; do [ "$s" = x0tta6bl4 ] || paired chain- "$s"; done
  fi
  echo "CPU/G: daemons' CPU (cores, both ends, during TCPx1) per Gbit/s of goodput. RSS: daemons' total."
  if [[ " $SYSTEMS " == *" x0tta6bl4-ebpf "* ]]; then
    echo "eBPF observation: TCPx1 with it on is $(ratio "$(get x0tta6bl4-ebpf tcp1)" "$(get x0tta6bl4 tcp1)") of off;" \
      "its programs' own CPU: $(get x0tta6bl4-ebpf bpf_cpu) cores per Gbit/s (kernel.bpf_stats_enabled, both nodes)"
    [[ " $SYSTEMS " != *" x0tta6bl4 "* ]] || ebpf_summary
  fi
}
