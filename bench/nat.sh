#!/usr/bin/env bash
# NAT traversal side by side: x0tta6bl4 and the newest Nebula (../shared/peers) in the same NAT lab,
# in one run, with one table at the end (docs/performance.md, "NAT traversal").
#
# The lab is the one the Go tests build (internal/node/netns_nat_test.go; docs/connectivity.md,
# "Lab"): an "internet" router joining a public node (203.0.113.1) and two home routers (198.51.100.1,
# 192.0.2.1), each with a home LAN (both 192.168.1.0/24) behind it: nftables masquerade on its uplink
# (EIM: port-preserving, endpoint-independent mapping) or `masquerade random` (symmetric: a new port
# per destination); unsolicited input to the router dropped, as home routers do (OPEN=1: not
# dropped). The home nodes know only the public node. Nebula: the public node is a lighthouse with am_relay; the homes run punchy (punch,
# respond) and name it as their relay. x0tta6bl4: the public node is an ordinary node and the homes'
# only configured peer. Certificates are issued before the clock starts.
#
# Every figure comes from the same observation for both systems:
#   first reply      the public node already running, both home nodes started at once -> first echo
#                    reply h1 -> h2 over the overlay (ping every 10 ms from the moment h1's tunnel
#                    device has its address; the table also gives the time from that moment)
#   direct (traffic) node start -> the h1/h2 traffic no longer crosses the public node: nftables
#                    counters on the internet router, sampled about every 100 ms while h1 pings h2
#                    every 10 ms (1100-byte pings, told apart from probes and punches by size), see
#                    the pings cross router to router and not into the public node, three samples in
#                    a row
#   direct (idle)    after the first reply, IDLE s without traffic, then five pings: which way did
#                    they go? For x0tta6bl4 also the time from start until h1 lists h2 as an up
#                    neighbour with no traffic at all (admin socket)
#   TCP              iperf3 h1 -> h2 (one stream, DURATION s): direct with EIM NATs (only once the
#                    path is direct), relayed with symmetric NATs
#   flush gap        h1 pings h2 every 5 ms; `conntrack -F` in h1's router; the longest silence
#                    from the last reply before the flush to the first reply to a request sent
#                    after it
#   at rest          packets the three nodes send in REST s without traffic (their underlay
#                    interfaces' counters), per node per minute
#
#   sudo bench/nat.sh                             # both systems, about 4 minutes a round
#   SYSTEMS=x0tta6bl4 ROUNDS=3 DURATION=10 sudo -E bench/nat.sh
#   OPEN=1 ...                                    # routers without an input firewall
#   X6_BIN=/path/to/x0tta6bl4 NO_APT=1 ...        # a binary built beforehand; skip apt-get
#   KEEP=1 ...                                    # keep the working directory: daemons' logs, the
#                                                 # counter samples, iperf3's JSON
#
# Needs root, /dev/net/tun, nftables, conntrack, iperf3, jq, Go (GOTOOLCHAIN=auto). Traffic stays in
# the namespaces it creates (prefix xn<pid>); they are removed on exit.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
root=$PWD

SYSTEMS=${SYSTEMS-"nebula x0tta6bl4"}
ROUNDS=${ROUNDS:-1}       # medians over rounds; single figures on a shared 2-core VM are noisy
DURATION=${DURATION:-5}   # iperf3 seconds
WAIT=${WAIT:-15}          # seconds allowed for the first reply
DIRECT_WAIT=${DIRECT_WAIT:-40} # seconds allowed for a direct path (Nebula needs about 15 with traffic)
IDLE=${IDLE:-5}           # seconds of silence before the idle path check
REST=${REST:-30}          # seconds at rest for the packet count
MTU=${MTU:-1300}          # Nebula's tunnel MTU: its default. With 1420 (bench/throughput.sh) a relayed
                          # packet outgrows the 1500-byte path and relayed TCP stalls
X6_MTU=${X6_MTU:-1372}    # x0tta6bl4's: 1500 - 28 - 100 (two session layers and the routed header)

PEERS=${PEERS:-$root/../shared/peers}
if [ -x "$PEERS/nebula" ] && [ -x "$PEERS/nebula-cert" ]; then
  PEERS=$(cd "$PEERS" && pwd)
  export PATH="$PEERS:$PATH"   # the newest release first, not Debian's old one
else
  PEERS=""
fi

die() { echo "nat.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

if [ -z "${NO_APT:-}" ]; then
  missing=()
  for p in iperf3 iproute2 iputils-ping jq nftables conntrack; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ -z "$PEERS" ] && ! command -v nebula >/dev/null; then missing+=(nebula); fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
    timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || log "WARNING: apt-get install failed"
  fi
fi
for t in iperf3 ip jq ping nft conntrack; do command -v $t >/dev/null || die "$t is missing"; done

tmp=$(mktemp -d /tmp/x6nat.XXXXXX)
P="xn$$"
declare -a PIDS=()

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for ns in $(ip netns list | awk '{print $1}' | grep -xE "${P}(inet|pub|r1|r2|h1|h2)"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns"
  done
  if [ -n "${KEEP:-}" ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${X6_BIN:-}" ]; then
  X6=$X6_BIN
else
  command -v go >/dev/null || die "go is missing"
  log "building x0tta6bl4"
  GOTOOLCHAIN=auto go build -o "$tmp/x0tta6bl4" ./cmd/x0tta6bl4 || die "go build failed"
  X6=$tmp/x0tta6bl4
fi

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); } # ms T0 T1 (nanoseconds)
ns() { echo "$P$1"; }
inns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

# ---------------------------------------------------------------------------------------------------
# The lab. lab KIND: both routers get masquerade (eim) or masquerade random (sym).
WAN_PUB=203.0.113.1
wan_of() { case $1 in 1) echo 198.51.100.1 ;; 2) echo 192.0.2.1 ;; esac; } # router 1 or 2

router_rules() {
  local how=masquerade input=""
  [ "$1" = sym ] && how="masquerade random"
  [ -n "${OPEN:-}" ] || input='
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }'
  cat <<EOF
table ip x6nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $how
  }
}
table inet x6fw {$input
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan" oifname "wan" accept
    iifname "wan" oifname "lan" ct state established,related accept
  }
}
EOF
}

# Counters on the internet router, of the packets that carry the measuring pings (ping -s 1100:
# 1150-1350 bytes once tunnelled, directly or relayed, by either system; probes, keepalives and
# punches are smaller): router to router (direct), and from the routers to the public node (relayed).
PING_SIZE=1100
inet_rules() {
  cat <<EOF
table ip x6 {
  counter direct { }
  counter topub { }
  chain paths {
    type filter hook forward priority 0; policy accept;
    ip length 1150-1350 ip saddr $(wan_of 1) ip daddr $(wan_of 2) counter name "direct"
    ip length 1150-1350 ip saddr $(wan_of 2) ip daddr $(wan_of 1) counter name "direct"
    ip length 1150-1350 ip saddr { $(wan_of 1), $(wan_of 2) } ip daddr $WAN_PUB counter name "topub"
  }
}
EOF
}

wire() { # wire NS DEV PEER_NS PEER_DEV: a veth pair between two namespaces
  ip link add "${P}x" type veth peer name "${P}y"
  ip link set "${P}x" netns "$(ns "$1")" name "$2"
  ip link set "${P}y" netns "$(ns "$3")" name "$4"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}

uplink() { # uplink NS ADDR: NS's "wan" to the internet router, ADDR/24 there and .254 on inet's side
  local gw=${2%.*}.254
  wire "$1" wan inet "$1"
  ip -n "$(ns "$1")" addr add "$2/24" dev wan
  ip -n "$(ns inet)" addr add "$gw/24" dev "$1"
  ip -n "$(ns "$1")" route add default via "$gw"
}

lab() {
  local kind=$1 n i
  for n in inet pub r1 r2 h1 h2; do ip netns add "$(ns $n)"; ip -n "$(ns $n)" link set lo up; done
  inns inet sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
  uplink pub $WAN_PUB
  for i in 1 2; do
    uplink "r$i" "$(wan_of $i)"
    wire "h$i" lan "r$i" lan
    ip -n "$(ns "r$i")" addr add 192.168.1.1/24 dev lan
    ip -n "$(ns "h$i")" addr add "192.168.1.${i}0/24" dev lan
    ip -n "$(ns "h$i")" route add default via 192.168.1.1
    inns "r$i" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    router_rules "$kind" | inns "r$i" nft -f -
  done
  inet_rules | inns inet nft -f -
}

teardown() {
  local pid n
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  PIDS=()
  for n in inet pub r1 r2 h1 h2; do
    ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$(ns $n)" 2>/dev/null || true
  done
}

bg() { # bg NS LOG CMD...: a daemon in a namespace
  local n=$1 logf=$2; shift 2
  ip netns exec "$(ns "$n")" "$@" >"$logf" 2>&1 &
  PIDS+=($!)
}

counters() { # prints "nanoseconds direct topub"
  local t; t=$(now)
  inns inet nft -j list counters table ip x6 |
    jq -r --arg t "$t" '[.nftables[] | .counter? | select(.) | {(.name): .packets}] | add | "\($t) \(.direct) \(.topub)"'
}

# ---------------------------------------------------------------------------------------------------
# Systems. setup_<sys> writes configurations and certificates (before the clock starts); start_<sys>
# pub|homes starts the public node or both home nodes; DST is h2's overlay address, DEV the tunnel
# device.

setup_nebula() {
  local d=$tmp/nebula i me ip
  rm -rf "$d"; mkdir -p "$d"
  (cd "$d" && nebula-cert ca -name nat-lab -out-crt ca.crt -out-key ca.key >/dev/null)
  for me in pub h1 h2; do
    case $me in pub) ip=10.203.0.1 ;; h1) ip=10.203.0.2 ;; h2) ip=10.203.0.3 ;; esac
    (cd "$d" && nebula-cert sign -ca-crt ca.crt -ca-key ca.key -name "$me" -networks "$ip/24" -out-crt "$me.crt" -out-key "$me.key" >/dev/null)
    {
      echo "pki: {ca: $d/ca.crt, cert: $d/$me.crt, key: $d/$me.key}"
      if [ $me = pub ]; then
        echo "static_host_map: {}"
        echo "lighthouse: {am_lighthouse: true, interval: 60}"
        echo "relay: {am_relay: true, use_relays: true}"
      else
        echo "static_host_map: {\"10.203.0.1\": [\"$WAN_PUB:4242\"]}"
        echo "lighthouse: {am_lighthouse: false, interval: 60, hosts: [\"10.203.0.1\"]}"
        echo "relay: {relays: [\"10.203.0.1\"], am_relay: false, use_relays: true}"
      fi
      echo "listen: {host: 0.0.0.0, port: 4242}"
      echo "punchy: {punch: true, respond: true}"
      echo "tun: {disabled: false, dev: neb0, drop_local_broadcast: false, drop_multicast: false, tx_queue: 500, mtu: $MTU}"
      echo "logging: {level: info, format: text}"
      echo "firewall:"
      echo "  outbound: [{port: any, proto: any, host: any}]"
      echo "  inbound: [{port: any, proto: any, host: any}]"
    } >"$d/$me.yml"
  done
  DST=10.203.0.3 DEV=neb0
}
start_nebula() { # start_nebula pub|homes
  local me
  if [ "$1" = pub ]; then set -- pub; else set -- h1 h2; fi
  for me in "$@"; do bg $me "$tmp/nebula/$me.log" nebula -config "$tmp/nebula/$me.yml"; done
}

setup_x0tta6bl4() {
  local d=$tmp/x6 me
  rm -rf "$d"; mkdir -p "$d"
  "$X6" ca init --dir "$d/ca" --trust-domain nat.bench --groups bench >/dev/null
  for me in pub h1 h2; do
    "$X6" ca issue --dir "$d/ca" --name $me --groups bench --out "$d" >"$d/$me.issue"
    {
      echo "key: $me.key"; echo "cert: $me.crt"; echo "ca: [ca/ca.crt]"; echo "listen: 0.0.0.0:7946"
      echo "admin_socket: $me.sock"; echo "log_level: info"
      echo "device: {mode: tun, name: x6, mtu: $X6_MTU}"
      [ $me = pub ] || { echo "peers:"; echo "  - {address: \"$WAN_PUB:7946\", cert: pub.crt}"; }
      echo "firewall:"
      echo "  inbound: [{proto: any, port: any, group: bench}]"
      echo "  outbound: [{proto: any, port: any, group: bench}]"
    } >"$d/$me.yml"
  done
  DST=$(awk '/overlay:/{print $2; exit}' "$d/h2.issue") DEV=x6
}
start_x0tta6bl4() { # start_x0tta6bl4 pub|homes
  local me
  if [ "$1" = pub ]; then set -- pub; else set -- h1 h2; fi
  for me in "$@"; do bg $me "$tmp/x6/$me.log" "$X6" node --config "$tmp/x6/$me.yml"; done
}

# start SYS: starts the public node and waits until it listens (a public node is up before the homes
# come, and a home's first handshake must not race its start), then both homes at once, at T0.
start() {
  "start_$1" pub
  local end=$((SECONDS + WAIT))
  until inns pub ss -Hlun | grep -qE ':(4242|7946) '; do
    [ $SECONDS -lt $end ] || die "$1: the public node does not listen"
    sleep 0.01
  done
  T0=$(now)
  "start_$1" homes
}

# x6_direct_idle T0: waits (no traffic) until h1 lists h2 as an up neighbour; prints ms since T0.
x6_direct_idle() {
  local t0=$1 end=$((SECONDS + DIRECT_WAIT))
  while [ $SECONDS -lt $end ]; do
    if "$X6" peers --socket "$tmp/x6/h1.sock" --json 2>/dev/null | jq -e '.[] | select(.name == "h2" and .up)' >/dev/null; then
      ms "$t0" "$(now)"; return 0
    fi
    sleep 0.02
  done
  echo "> ${DIRECT_WAIT}000"
}

# ---------------------------------------------------------------------------------------------------
# Measurements.

wait_device() { # until h1's tunnel device has an address
  local end=$((SECONDS + WAIT))
  while [ $SECONDS -lt $end ]; do
    ip -n "$(ns h1)" addr show dev "$DEV" 2>/dev/null | grep -q 'inet' && return 0
    sleep 0.01
  done
  return 1
}

first_reply() { # first_reply T0: prints ms from T0 to the first reply and from h1's device up, or fails
  wait_device || return 1
  local td; td=$(now)
  inns h1 ping -q -c 1 -i 0.01 -w "$WAIT" "$DST" >/dev/null 2>&1 || return 1
  local t1; t1=$(now)
  echo "$(ms "$1" "$t1") $(ms "$td" "$t1")"
}

# direct_with_traffic T0: pings every 10 ms and samples the path counters; prints ms from T0 to the
# first of three samples in a row that see the pings cross router to router and not into the public
# node, or "> DIRECT_WAIT s".
direct_with_traffic() {
  local t0=$1 f=$tmp/samples
  inns h1 ping -q -s $PING_SIZE -i 0.01 -w "$DIRECT_WAIT" "$DST" >/dev/null 2>&1 &
  local pinger=$!
  : >"$f"
  local end=$((SECONDS + DIRECT_WAIT)) found=""
  while [ $SECONDS -lt $end ]; do
    counters >>"$f"
    found=$(awk -v t0="$t0" '
      NR > 1 { dt = ($1 - t) / 1e9; d = ($2 - dir) / dt; p = ($3 - pub) / dt
               # 10 ms pings: 200 packets/s, router to router or into the public node
               if (d >= 100 && p <= 20) { if (!run) first = t; run++ } else run = 0
               if (run >= 3) { printf "%d", (first - t0) / 1e6; exit } }
      { t = $1; dir = $2; pub = $3 }' "$f")
    [ -n "$found" ] && break
    sleep 0.08
  done
  kill $pinger 2>/dev/null; wait $pinger 2>/dev/null || true
  cp "$f" "$tmp/samples.$(date +%s)"
  echo "${found:-> ${DIRECT_WAIT}000}"
}

# path_now: five pings 10 ms apart; prints direct, relayed or mixed (direct/relayed packets) by which
# way they went.
path_now() {
  local a b
  a=$(counters)
  inns h1 ping -q -s $PING_SIZE -c 5 -i 0.01 -W 1 "$DST" >/dev/null 2>&1 || true
  b=$(counters)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); d = y[2] - x[2]; p = y[3] - x[3]
    if (d >= 8 && p <= 2) print "direct"; else if (p >= 8 && d <= 2) print "relayed"; else printf "mixed(%d/%d)\n", d, p }'
}

tcp() { # prints Gbit/s h1 -> h2
  inns h2 timeout $((DURATION + 20)) iperf3 -s -1 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  local j
  j=$(timeout $((DURATION + 15)) ip netns exec "$(ns h1)" iperf3 -c "$DST" -t "$DURATION" -J 2>/dev/null || true)
  wait $srv 2>/dev/null || true
  echo "$j" >"$tmp/iperf.$(date +%s)"
  jq -r '.end.sum_received.bits_per_second // empty | . / 1e9 | . * 100 | round / 100' <<<"$j" 2>/dev/null || true
}

# flush_gap: h1 pings h2 every 5 ms for 3 s; at 1 s, conntrack -F in r1. Prints the gap in ms.
flush_gap() {
  local f=$tmp/flushping
  inns h1 ping -D -i 0.005 -c 600 -W 1 "$DST" >"$f" 2>/dev/null &
  local pinger=$!
  sleep 1
  local tf; tf=$(date +%s.%N)
  inns r1 conntrack -F >/dev/null 2>&1
  wait $pinger 2>/dev/null || true
  # reply lines: [unix.micro] 64 bytes from ...: icmp_seq=N ttl=T time=R ms
  awk -v tf="$tf" '
    /bytes from/ { ts = substr($1, 2, length($1) - 2) + 0; rtt = 0
                   for (i = 1; i <= NF; i++) if ($i ~ /^time=/) rtt = substr($i, 6) / 1000
                   n++; T[n] = ts; S[n] = ts - rtt }
    END { from = 0; to = 0
          for (i = 1; i <= n; i++) { if (T[i] < tf) from = T[i]; else if (S[i] > tf && (to == 0 || T[i] < to)) to = T[i] }
          if (from == 0 || to == 0) { print "lost"; exit }
          last = from; gap = 0
          for (i = 1; i <= n; i++) if (T[i] >= from && T[i] <= to) { if (T[i] - last > gap) gap = T[i] - last; last = T[i] }
          printf "%.0f\n", gap * 1000 }' "$f"
}

tx_packets() { # packets sent by the three nodes' underlay interfaces
  local s=0 n dev v
  for n in pub h1 h2; do
    dev=lan; [ $n = pub ] && dev=wan
    v=$(ip -n "$(ns $n)" -s -j link show dev $dev | jq '.[0].stats64.tx.packets')
    s=$((s + v))
  done
  echo $s
}

ROUND=1
put() { mkdir -p "$tmp/round/$ROUND/$1"; echo "$3" >"$tmp/round/$ROUND/$1/$2"; log "$1 $2: $3"; }

run_system() {
  local sys=$1 t0 v
  "setup_$sys"

  log "== $sys: EIM NATs, with traffic"
  lab eim
  start "$sys"; t0=$T0
  v=$(first_reply "$t0") || { tail -n 5 "$tmp"/*/*.log >&2 || true; die "$sys: no first reply within $WAIT s"; }
  put "$sys" first_eim "${v% *}"
  put "$sys" first_eim_dev "${v#* }"
  put "$sys" direct_traffic "$(direct_with_traffic "$t0")"
  v=$(path_now)
  put "$sys" path_eim "$v"
  if [ "$v" = direct ]; then put "$sys" tcp_direct "$(tcp)"; else put "$sys" tcp_direct "not direct"; fi
  put "$sys" flush_eim "$(flush_gap)"
  put "$sys" flush_eim_path "$(path_now)"
  teardown

  log "== $sys: EIM NATs, idle"
  lab eim
  start "$sys"; t0=$T0
  if [ "$sys" = x0tta6bl4 ]; then put "$sys" direct_idle_exact "$(x6_direct_idle "$t0")"; fi
  first_reply "$t0" >/dev/null || die "$sys: no first reply within $WAIT s"
  sleep "$IDLE"
  put "$sys" direct_idle "$(path_now) after ${IDLE} s idle"
  sleep 2
  local a b; a=$(tx_packets); sleep "$REST"; b=$(tx_packets)
  put "$sys" rest "$(awk -v d=$((b - a)) -v r="$REST" 'BEGIN { printf "%.0f", d / 3 / (r / 60) }')"
  teardown

  log "== $sys: symmetric NATs"
  lab sym
  start "$sys"; t0=$T0
  v=$(first_reply "$t0") || die "$sys: no first reply within $WAIT s (symmetric)"
  put "$sys" first_sym "${v% *}"
  put "$sys" first_sym_dev "${v#* }"
  put "$sys" path_sym "$(path_now)"
  put "$sys" tcp_relayed "$(tcp)"
  put "$sys" flush_sym "$(flush_gap)"
  put "$sys" flush_sym_path "$(path_now)"
  teardown
}

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  [ "$ROUNDS" = 1 ] || log "=== round $ROUND of $ROUNDS"
  for sys in $SYSTEMS; do
    set +e
    ( set -e; run_system "$sys" )
    rc=$?
    set -e
    [ $rc = 0 ] || { log "WARNING: $sys failed (exit $rc)"; teardown; }
  done
done

# ---------------------------------------------------------------------------------------------------
# The table: per figure the median over the rounds (a figure in words: the most frequent).
fig() { # fig SYS FIELD
  local vals; vals=$(cat "$tmp"/round/*/"$1"/"$2" 2>/dev/null || true)
  [ -n "$vals" ] || { echo "n/a"; return; }
  awk '/^-?[0-9.]+$/ { v[n++] = $1 + 0; next } { if (++seen[$0] > best) { best = seen[$0]; other = $0 } }
    END { if (n == 0) { print other; exit }
          for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
          if (m == int(m)) printf "%d\n", m; else printf "%.2f\n", m }' <<<"$vals"
}
ver() {
  case $1 in
    nebula) if [ -n "$PEERS" ]; then awk -F'|' '$2 ~ /^ *nebula[ ,]/ { gsub(/ /, "", $4); print $4 }' "$PEERS/README.md"; else dpkg-query -W -f '${Version}' nebula 2>/dev/null; fi ;;
    x0tta6bl4) if [ -n "${X6_BIN:-}" ]; then echo X6_BIN; else git -C "$root" describe --always --dirty 2>/dev/null || echo "?"; fi ;;
  esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'; }

{
  echo
  echo "NAT traversal — $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)$([ "$ROUNDS" = 1 ] || echo ", medians of $ROUNDS rounds")"
  echo "nebula $(ver nebula), x0tta6bl4 $(ver x0tta6bl4); iperf3 ${DURATION} s, idle ${IDLE} s, rest ${REST} s"
  printf '%-44s %-26s %-26s %s\n' figure nebula x0tta6bl4 "goal (x0tta6bl4)"
  row() { printf '%-44s %-26s %-26s %s\n' "$1" "$(fig nebula "$2")" "$(fig x0tta6bl4 "$2")" "$3"; }
  row "first reply after start, EIM NATs (ms)" first_eim "<= 500"
  row "  from h1's tunnel device up (ms)" first_eim_dev "-"
  row "first reply after start, symmetric (ms)" first_sym "<= 500"
  row "  from h1's tunnel device up (ms)" first_sym_dev "-"
  row "direct after start, with traffic (ms)" direct_traffic "<= 1000"
  row "path after the traffic phase" path_eim "direct"
  row "direct after start, idle (ms, admin socket)" direct_idle_exact "<= 1000"
  row "path after first reply + idle" direct_idle "direct"
  row "TCP direct, EIM NATs (Gbit/s)" tcp_direct "-"
  row "TCP relayed, symmetric NATs (Gbit/s)" tcp_relayed ">= 2x nebula ($(ratio "$(fig x0tta6bl4 tcp_relayed)" "$(fig nebula tcp_relayed)"))"
  row "path, symmetric NATs" path_sym "relayed"
  row "conntrack flush gap, EIM lab (ms)" flush_eim "<= 50"
  row "  path after the flush" flush_eim_path "direct"
  row "conntrack flush gap, symmetric (ms)" flush_sym "<= 50"
  row "  path after the flush" flush_sym_path "relayed"
  row "packets per node per minute at rest" rest "-"
}
