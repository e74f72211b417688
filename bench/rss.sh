#!/usr/bin/env bash
# Memory over time (docs/performance.md, "Memory over time"): a mesh of five real `x0tta6bl4 node`
# processes, each in its own network namespace with a kernel TUN device, joined by veth pairs, under
# steady traffic with churn, for DURATION seconds. Every 15 s it samples each node's RSS (VmRSS, RssAnon
# and RssFile from /proc/PID/status) and the Go runtime's figures (`x0tta6bl4 memory`, over the admin
# socket); at fixed times it saves each node's heap profile (`x0tta6bl4 memory --heap-profile`). It
# writes a CSV, a plot (gnuplot, SVG and PNG) and a table of RSS at minutes 1, 5, 10, 20 and 30 with the
# ratio of the last sample to minute 5.
#
#   n1 ---- n2          a ring n1-n2-n3-n4 (underlay 10.202.0.0/16, only inside namespaces the
#   |      /  \         script creates), and n5 hanging off n2 and n4.
#   |    n5    |        Traffic: UDP n1 -> n3 (iperf3, UDP_RATE), TCP n2 -> n4 (iperf3, TCP_RATE), both
#   |      \  /         over two hops and restarted every 60 s; ping n1 -> n5 and n3 -> n5 (5 a second).
#   n4 ---- n3          Churn: n5 is restarted every RESTART_EVERY s; every CUT_EVERY s one ring link is
#                       cut (veth down) for CUT_FOR s, the four ring links in turn.
#
#   sudo bench/rss.sh                        # 30 minutes
#   DURATION=600 PROFILE_AT="60 300" sudo -E bench/rss.sh
#   OUT=DIR ...                              # where the CSV, plot, profiles and logs go
#   X6_BIN=/path/to/x0tta6bl4 ...            # use this binary instead of building one
#   NO_APT=1 ...                             # skip apt-get (iperf3, gnuplot-nox already installed)
#   GODEBUG=... GOGC=... ...                 # passed to the nodes as they are (GODEBUG=memprofilerate=4096:
#                                            # finer heap profiles, for diagnosis)
#   REPORT_ONLY=1 OUT=DIR bench/rss.sh       # only the table and plot again, from DIR/rss.csv
#
# n1-n4 run for the whole time; their ratio is the figure of merit. n5's RSS restarts with it.
# Compare heap profiles with: go tool pprof -sample_index=inuse_space -diff_base OUT/prof/n1-300s.pb.gz OUT/prof/n1-1800s.pb.gz
#
# Needs root, /dev/net/tun, iproute2, Go (GOTOOLCHAIN=auto) unless X6_BIN, and Debian's apt. Cleans up on exit.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

DURATION=${DURATION:-1800}
SAMPLE_EVERY=${SAMPLE_EVERY:-15}
PROFILE_AT=${PROFILE_AT:-"60 300 600 1200"} # seconds; one more is taken at the end
RESTART_EVERY=${RESTART_EVERY:-120}
CUT_EVERY=${CUT_EVERY:-90}
CUT_FOR=${CUT_FOR:-20}
UDP_RATE=${UDP_RATE:-3M}
TCP_RATE=${TCP_RATE:-2M}
OUT=${OUT:-/tmp/x6rss.$(date +%Y%m%d-%H%M%S)}

die() { echo "rss.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

mkdir -p "$OUT/prof" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
P="xr$$"  # namespace and interface prefix, unique per run
declare -a NODE_PID=() RESTARTS=() HELPERS=()
NAMES=(n1 n2 n3 n4 n5)
# Links as "A B": B dials A. The first four are the ring, the last two n5's.
LINKS=("0 1" "1 2" "2 3" "0 3" "1 4" "3 4")
RING=4
CSV=$OUT/rss.csv

val() { # val NODE COLUMN SECONDS: COLUMN of NODE's sample nearest SECONDS (last: its last sample), in MiB
  awk -F, -v n="$1" -v c="$2" -v t="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
    $2 == n && k { d = t == "last" ? 0 : ($1 > t ? $1 - t : t - $1); if (t == "last" || v == "" || d < bd) { v = $k; bd = d } }
    END { if (v == "") print "-"; else printf "%.1f", v / (c ~ /_kb$/ ? 1024 : 1048576) }' "$CSV"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b; else print "-" }'; }
# report T: the table (RSS in MiB at the sample nearest each minute mark, and each node's last sample
# over its minute-5 one) and the plot, from $CSV; the run lasted T seconds.
report() {
  local t=$1 n i r5 rl a5 al h5 marks=(60 300 600 1200 1800)
  {
    echo
    echo "x0tta6bl4 RSS over time — $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${t}s, $(cat "$OUT/version" 2>/dev/null || echo ?)"
    printf '%-4s' node
    for m in "${marks[@]}"; do printf ' %6s' "$((m / 60))min"; done
    printf ' %6s %9s | %-17s %9s | %s\n' last "last/5min" "anon 5min -> last" "last/5min" "Go heap in use 5min -> last"
    for i in "${!NAMES[@]}"; do
      n=${NAMES[$i]}
      printf '%-4s' "$n"
      for m in "${marks[@]}"; do
        if [ "$m" -le "$t" ]; then printf ' %6s' "$(val "$n" rss_kb "$m")"; else printf ' %6s' -; fi
      done
      r5=$(val "$n" rss_kb 300) rl=$(val "$n" rss_kb last) a5=$(val "$n" rss_anon_kb 300) al=$(val "$n" rss_anon_kb last)
      h5=$(val "$n" heap_inuse 300)
      if [ "$t" -lt 300 ]; then r5=- a5=- h5=-; fi
      printf ' %6s %9s | %-17s %9s | %s -> %s' "$rl" "$(ratio "$rl" "$r5")" "$a5 -> $al" "$(ratio "$al" "$a5")" \
        "$h5" "$(val "$n" heap_inuse last)"
      if [ "$i" = 4 ]; then printf '  (restarted every %ss)' "$RESTART_EVERY"; fi
      echo
    done
    echo "RSS: VmRSS in MiB; anon: RssAnon, VmRSS less the pages of the binary (RssFile). CSV $CSV; heap profiles $OUT/prof"
  } | tee "$OUT/table.txt"
  if ! command -v gnuplot >/dev/null; then log "gnuplot is missing: no plot (CSV $CSV)"; return 0; fi
  local top="" bottom=""
  for i in "${!NAMES[@]}"; do
    n=${NAMES[$i]}
    awk -F, -v n="$n" '
      NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; next }
      $2 == n { print $1 / 60, $k["rss_kb"] / 1024, (k["rss_anon_kb"] ? $k["rss_anon_kb"] / 1024 : "NaN"), $k["heap_inuse"] / 1048576 }' "$CSV" >"$OUT/$n.dat"
    top="$top '$OUT/$n.dat' using 1:2 with lines lw 2 lc $((i + 1)) title '$n',"
    bottom="$bottom '$OUT/$n.dat' using 1:3 with lines lw 2 lc $((i + 1)) title '$n RssAnon', '$OUT/$n.dat' using 1:4 with lines dt 2 lc $((i + 1)) title '$n Go heap in use',"
  done
  local fmt
  for fmt in "svg size 900,800 dynamic background rgb 'white'" "pngcairo size 900,800"; do
    gnuplot <<EOF
set terminal $fmt
set output '$OUT/rss.${fmt:0:3}'
set multiplot layout 2,1 title "x0tta6bl4 nodes under traffic and churn (n5 restarted every ${RESTART_EVERY}s, a ring link cut every ${CUT_EVERY}s)"
set xlabel 'minutes'
set ylabel 'MiB'
set key outside right
set lmargin at screen 0.08
set rmargin at screen 0.72
set grid
set yrange [0:*]
set title 'VmRSS'
plot ${top%,}
set title 'RssAnon (solid) and Go heap in use (dashed)'
plot ${bottom%,}
unset multiplot
EOF
  done
  log "plot: $OUT/rss.svg (and rss.png)"
}

if [ -n "${REPORT_ONLY:-}" ]; then # only the table and plot of an earlier run in $OUT
  report "$(awk -F, 'END { print $1 }' "$CSV")"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
[ -e /dev/net/tun ] || die "needs /dev/net/tun"

if [ -z "${NO_APT:-}" ]; then
  missing=()
  for p in iperf3 iproute2 iputils-ping jq procps gnuplot-nox; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
    timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || log "WARNING: apt-get install failed"
  fi
fi
for t in iperf3 ip jq ping; do command -v $t >/dev/null || die "$t is missing"; done

cleanup() {
  set +e
  for pid in "${HELPERS[@]}" "${NODE_PID[@]}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null; done
  sleep 0.5
  for ns in $(ip netns list | awk '{print $1}' | grep "^${P}"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns"
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${X6_BIN:-}" ]; then
  X6=$X6_BIN
  echo "X6_BIN=$X6_BIN" >"$OUT/version"
else
  log "building x0tta6bl4"
  GOTOOLCHAIN=auto go build -o "$OUT/x0tta6bl4" ./cmd/x0tta6bl4 || die "go build failed"
  X6=$OUT/x0tta6bl4
  git describe --always --dirty >"$OUT/version" 2>/dev/null || true
fi

ns() { echo "$P${NAMES[$1]}"; }
sock() { echo "$OUT/${NAMES[$1]}.sock"; }

# ---------------------------------------------------------------------------------------------------
# Mesh: namespaces, veths, certificates, configurations.
d=$OUT/mesh
mkdir -p "$d"
"$X6" ca init --dir "$d/ca" --trust-domain rss.test --groups bench >/dev/null
for i in "${!NAMES[@]}"; do
  "$X6" ca issue --dir "$d/ca" --name "${NAMES[$i]}" --groups bench --out "$d" >/dev/null
  ip netns add "$(ns "$i")"
  ip -n "$(ns "$i")" link set lo up
  for k in all default; do ip netns exec "$(ns "$i")" sh -c "echo 0 > /proc/sys/net/ipv6/conf/$k/accept_dad"; done
done
for k in "${!LINKS[@]}"; do
  read -r a b <<<"${LINKS[$k]}"
  ip link add "${P}v${k}a" type veth peer name "${P}v${k}b"
  ip link set "${P}v${k}a" netns "$(ns "$a")" name "v${k}a"
  ip link set "${P}v${k}b" netns "$(ns "$b")" name "v${k}b"
  ip -n "$(ns "$a")" addr add "10.202.$k.1/30" dev "v${k}a"
  ip -n "$(ns "$b")" addr add "10.202.$k.2/30" dev "v${k}b"
  ip -n "$(ns "$a")" link set "v${k}a" up
  ip -n "$(ns "$b")" link set "v${k}b" up
done
for i in "${!NAMES[@]}"; do
  {
    echo "key: ${NAMES[$i]}.key"; echo "cert: ${NAMES[$i]}.crt"; echo "ca: [ca/ca.crt]"; echo "listen: 0.0.0.0:7946"
    echo "admin_socket: $(sock "$i")"; echo "log_level: info"
    echo "device: {mode: tun, name: x6}"
    peers=""
    for k in "${!LINKS[@]}"; do
      read -r a b <<<"${LINKS[$k]}"
      [ "$b" = "$i" ] && peers="$peers{address: 10.202.$k.1:7946, cert: ${NAMES[$a]}.crt}, "
    done
    [ -n "$peers" ] && echo "peers: [${peers%, }]"
    echo "firewall:"
    echo "  inbound: [{proto: any, port: any, group: bench}]"
    echo "  outbound: [{proto: any, port: any, group: bench}]"
  } >"$d/${NAMES[$i]}.yaml"
done

start_node() {
  local i=$1
  ip netns exec "$(ns "$i")" "$X6" node --config "$d/${NAMES[$i]}.yaml" >>"$OUT/logs/${NAMES[$i]}.log" 2>&1 &
  NODE_PID[$i]=$!
}
stop_node() {
  local i=$1 pid=${NODE_PID[$1]}
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

T0=$(date +%s)
for i in "${!NAMES[@]}"; do start_node "$i"; RESTARTS[$i]=0; done
elapsed() { echo $(($(date +%s) - T0)); }

overlay() { # overlay I: node I's overlay address, from its status
  "$X6" status --socket "$(sock "$1")" --json 2>/dev/null | jq -r '.overlay_address // empty'
}
declare -a ADDR=()
for i in "${!NAMES[@]}"; do
  for _ in $(seq 100); do ADDR[$i]=$(overlay "$i" || true); [ -n "${ADDR[$i]}" ] && break; sleep 0.1; done
  [ -n "${ADDR[$i]}" ] || die "${NAMES[$i]} has no overlay address (log: $OUT/logs/${NAMES[$i]}.log)"
done
log "mesh of ${#NAMES[@]} nodes started; output in $OUT"

# ---------------------------------------------------------------------------------------------------
# Traffic: each flow a loop of 60 s iperf3 runs (a run that fails, e.g. across a cut, is retried).
flow() { # flow NAME FROM TO PORT IPERF3-ARGS...
  local name=$1 from=$2 to=$3 port=$4; shift 4
  while true; do
    ip netns exec "$(ns "$to")" timeout 80 iperf3 -s -1 -p "$port" --idle-timeout 70 >/dev/null 2>&1 &
    local srv=$!
    sleep 0.5
    ip netns exec "$(ns "$from")" timeout 75 iperf3 -c "${ADDR[$to]}" -p "$port" -t 60 --connect-timeout 3000 "$@" \
      >>"$OUT/logs/$name.log" 2>&1 || sleep 2
    kill "$srv" 2>/dev/null || true
    wait "$srv" 2>/dev/null || true
  done
}
flow udp 0 2 5201 -u -b "$UDP_RATE" -l 1200 &
HELPERS+=($!)
flow tcp 1 3 5202 -b "$TCP_RATE" &
HELPERS+=($!)
for from in 0 2; do
  ip netns exec "$(ns "$from")" ping -i 0.2 -W 1 -q "${ADDR[4]}" >"$OUT/logs/ping-${NAMES[$from]}.log" 2>&1 &
  HELPERS+=($!)
done

# ---------------------------------------------------------------------------------------------------
# Sampling, profiles and churn on one clock.
# rss_kb is VmRSS: rss_anon_kb (heap, stacks, runtime) plus rss_file_kb (the pages of the binary the
# process has touched, shared with every process that maps it); the rest are the Go runtime's figures
# in bytes (`x0tta6bl4 memory`).
echo "t_s,node,pid,restarts,rss_kb,rss_anon_kb,rss_file_kb,heap_alloc,heap_inuse,heap_idle,heap_released,heap_sys,stack_inuse,sys,goroutines,num_gc,next_gc" >"$CSV"
sample() {
  local t=$1 i m rss
  for i in "${!NAMES[@]}"; do
    rss=$(awk '/^VmRSS/{r = $2} /^RssAnon/{a = $2} /^RssFile/{f = $2} END {if (r != "") print r "," a "," f}' \
      "/proc/${NODE_PID[$i]}/status" 2>/dev/null || true)
    [ -n "$rss" ] || continue
    m=$("$X6" memory --socket "$(sock "$i")" --json 2>/dev/null |
      jq -r '[.heap_alloc, .heap_inuse, .heap_idle, .heap_released, .heap_sys, .stack_inuse, .sys, .goroutines, .num_gc, .next_gc] | @csv' || true)
    [ -n "$m" ] || m=",,,,,,,,,"
    echo "$t,${NAMES[$i]},${NODE_PID[$i]},${RESTARTS[$i]},$rss,$m" >>"$CSV"
  done
}
profiles() {
  local t=$1 i
  for i in "${!NAMES[@]}"; do
    "$X6" memory --socket "$(sock "$i")" --heap-profile "$OUT/prof/${NAMES[$i]}-${t}s.pb.gz" >/dev/null 2>&1 ||
      log "no heap profile from ${NAMES[$i]} at ${t}s"
  done
}

next_sample=0 next_restart=$RESTART_EVERY next_cut=$CUT_EVERY cut_link=-1 restore_at=0 ring=0
read -r -a prof_at <<<"$PROFILE_AT"
while true; do
  t=$(elapsed)
  [ "$t" -ge "$DURATION" ] && break
  if [ "$t" -ge "$next_sample" ]; then
    sample "$t"
    next_sample=$((next_sample + SAMPLE_EVERY))
  fi
  if [ ${#prof_at[@]} -gt 0 ] && [ "$t" -ge "${prof_at[0]}" ]; then
    profiles "${prof_at[0]}"
    prof_at=("${prof_at[@]:1}")
  fi
  if [ "$t" -ge "$next_restart" ]; then
    stop_node 4
    start_node 4
    RESTARTS[4]=$((RESTARTS[4] + 1))
    next_restart=$((next_restart + RESTART_EVERY))
  fi
  if [ "$cut_link" -ge 0 ] && [ "$t" -ge "$restore_at" ]; then
    read -r a _ <<<"${LINKS[$cut_link]}"
    ip -n "$(ns "$a")" link set "v${cut_link}a" up
    cut_link=-1
  fi
  if [ "$t" -ge "$next_cut" ]; then
    cut_link=$ring ring=$(((ring + 1) % RING))
    read -r a _ <<<"${LINKS[$cut_link]}"
    ip -n "$(ns "$a")" link set "v${cut_link}a" down
    restore_at=$((t + CUT_FOR)) next_cut=$((next_cut + CUT_EVERY))
  fi
  sleep 1
done
t=$(elapsed)
sample "$t"
profiles "$t"

# Evidence that traffic flowed: each node's packet counters, and the flows' runs.
for i in "${!NAMES[@]}"; do
  "$X6" status --socket "$(sock "$i")" --json 2>/dev/null |
    jq -r --arg n "${NAMES[$i]}" '"\($n): sent \(.stats.Sent), delivered \(.stats.Delivered), forwarded \(.stats.Forwarded)"' >&2 || true
done
log "iperf3 runs completed: udp $(grep -c 'receiver' "$OUT/logs/udp.log" || true), tcp $(grep -c 'receiver' "$OUT/logs/tcp.log" || true); n5 restarted ${RESTARTS[4]} times"

report "$t"
