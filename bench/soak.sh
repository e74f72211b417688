#!/usr/bin/env bash
# Soak (docs/performance.md, "Soak"): a control plane and a mesh of netstack nodes on loopback under
# steady load for DURATION seconds; every SAMPLE_EVERY seconds it samples each long-lived process's
# RSS (/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd) and goroutines (go_goroutines on
# its plain-HTTP metrics listener). At the end it plots them (gnuplot, PNG) and checks the trend:
# for every process and figure the median of the last fifth of the run may exceed the median of the
# window after warm-up (20-40% of the run) by at most the ratio and slack below, or the script
# exits 1.
#
# Load, all bounded and all on 127.0.0.1:
#   - traffic: each of the NODES long-lived nodes pings the next one through the mesh, 5 ICMPv6 echo
#     requests every second (x0tta6bl4 ping, over the admin socket), in a ring;
#   - enrolments and revocations: every CHURN_EVERY s a new netstack node enrols with a fresh join
#     token (node --join), runs for CHURN_LIFE s (reporting, polling the revocation list and the
#     policy) and is revoked (ctl revoke) and stopped;
#   - reports: every node's agent reports its links every 10 s; on top of that a reader asks
#     `ctl status` and `ctl nodes` every second (the mesh view built from the reports).
#
#   bash bench/soak.sh                          # 15 minutes
#   DURATION=120 SAMPLE_EVERY=5 bash bench/soak.sh
#   OUT=DIR ...  X6_BIN=/path/to/x0tta6bl4 ...  NO_APT=1 ...  (gnuplot-nox, curl already there)
#   REPORT_ONLY=1 OUT=DIR bash bench/soak.sh    # the check and plot again from DIR/soak.csv
#
# Needs no root: netstack nodes have no TUN device. Cleans up its processes on exit.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

DURATION=${DURATION:-900}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
NODES=${NODES:-3}
CHURN_EVERY=${CHURN_EVERY:-30}
CHURN_LIFE=${CHURN_LIFE:-20}
# Trend limits: last-fifth median <= warm median * RATIO + SLACK.
RSS_RATIO=${RSS_RATIO:-1.25} RSS_SLACK_KB=${RSS_SLACK_KB:-8192}
FD_RATIO=${FD_RATIO:-1.25} FD_SLACK=${FD_SLACK:-8}
GR_RATIO=${GR_RATIO:-1.25} GR_SLACK=${GR_SLACK:-20}
OUT=${OUT:-/tmp/x6soak.$(date +%Y%m%d-%H%M%S)}
BASE=${BASE_PORT:-$((20000 + ($$ % 200) * 100))} # ports BASE.. on 127.0.0.1, per run

die() { echo "soak.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
CSV=$OUT/soak.csv

# check: the trend rule over $CSV; prints a table and returns 1 if anything grew past its limit.
check() {
  awk -F, -v d="$1" -v rr="$RSS_RATIO" -v rs="$RSS_SLACK_KB" -v fr="$FD_RATIO" -v fs="$FD_SLACK" \
    -v gr="$GR_RATIO" -v gs="$GR_SLACK" '
    function median(arr, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
      return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
    }
    NR == 1 { next }
    {
      p = $2; procs[p] = 1
      for (c = 3; c <= 5; c++) {
        k = p SUBSEP c
        if ($1 >= 0.2 * d && $1 <= 0.4 * d) { w[k, ++nw[k]] = $c }
        if ($1 >= 0.8 * d) { l[k, ++nl[k]] = $c }
      }
    }
    END {
      name[3] = "rss_kb"; name[4] = "fds"; name[5] = "goroutines"
      ratio[3] = rr; slack[3] = rs; ratio[4] = fr; slack[4] = fs; ratio[5] = gr; slack[5] = gs
      bad = 0
      printf "%-8s %-10s %12s %12s %12s  %s\n", "process", "figure", "warm", "last fifth", "limit", "verdict"
      for (p in procs) for (c = 3; c <= 5; c++) {
        k = p SUBSEP c
        if (!nw[k] || !nl[k]) { printf "%-8s %-10s no samples in a window\n", p, name[c]; bad = 1; continue }
        delete a; for (i = 1; i <= nw[k]; i++) a[i] = w[k, i]; mw = median(a, nw[k])
        delete a; for (i = 1; i <= nl[k]; i++) a[i] = l[k, i]; ml = median(a, nl[k])
        lim = mw * ratio[c] + slack[c]
        v = ml <= lim ? "ok" : "GREW"
        if (v != "ok") bad = 1
        printf "%-8s %-10s %12.0f %12.0f %12.0f  %s\n", p, name[c], mw, ml, lim, v
      }
      exit bad
    }' "$CSV"
}

plot() {
  command -v gnuplot >/dev/null || { log "gnuplot is missing: no plot (CSV $CSV)"; return 0; }
  local p i=0 rss="" fds="" grs=""
  for p in $(awk -F, 'NR > 1 { print $2 }' "$CSV" | sort -u); do
    i=$((i + 1))
    awk -F, -v p="$p" 'NR > 1 && $2 == p { print $1 / 60, $3 / 1024, $4, $5 }' "$CSV" >"$OUT/$p.dat"
    rss="$rss '$OUT/$p.dat' using 1:2 with lines lw 2 lc $i title '$p',"
    fds="$fds '$OUT/$p.dat' using 1:3 with lines lw 2 lc $i title '$p',"
    grs="$grs '$OUT/$p.dat' using 1:4 with lines lw 2 lc $i title '$p',"
  done
  gnuplot <<EOF
set terminal pngcairo size 900,1000
set output '$OUT/soak.png'
set multiplot layout 3,1 title "x0tta6bl4 soak: control plane + $NODES netstack nodes, pings, a node enrolled and revoked every ${CHURN_EVERY}s"
set xlabel 'minutes'
set key outside right
set lmargin at screen 0.1
set rmargin at screen 0.8
set grid
set yrange [0:*]
set title 'RSS (MiB)'
plot ${rss%,}
set title 'open file descriptors'
plot ${fds%,}
set title 'goroutines'
plot ${grs%,}
unset multiplot
EOF
  log "plot: $OUT/soak.png"
}

if [ -n "${REPORT_ONLY:-}" ]; then
  d=$(awk -F, 'END { print $1 }' "$CSV")
  plot
  check "$d"
  exit $?
fi

if [ -z "${NO_APT:-}" ] && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in gnuplot-nox curl; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the install anyway"
    timeout 300 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || log "WARNING: apt-get install failed"
  fi
fi
command -v curl >/dev/null || die "curl is missing"

declare -a PIDS=() HELPERS=()
cleanup() {
  set +e
  for pid in "${HELPERS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  [ -f "$OUT/churn.pid" ] && kill "$(cat "$OUT/churn.pid")" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${X6_BIN:-}" ]; then
  X6=$X6_BIN
else
  log "building x0tta6bl4"
  GOTOOLCHAIN=auto go build -o "$OUT/x0tta6bl4" ./cmd/x0tta6bl4 || die "go build failed"
  X6=$OUT/x0tta6bl4
fi
git describe --always --dirty >"$OUT/version" 2>/dev/null || true

# Control plane: SQLite, TLS on BASE, metrics on BASE+1.
C=$OUT/control
mkdir -p "$C"
cat >"$C/control.yaml" <<EOF
listen: "127.0.0.1:$BASE"
data_dir: data
metrics: {listen: "127.0.0.1:$((BASE + 1))"}
rate_limits: {per_ip: {rate: 1000, burst: 2000}, auth: {rate: 50, burst: 100}}
enrollment: {max_pending_tokens: 1000}
EOF
"$X6" control init --config "$C/control.yaml" --trust-domain soak.test --admin soak >"$C/init.out" 2>&1 || die "control init: $(cat "$C/init.out")"
export X0TTA6BL4_CONTROL_URL=https://127.0.0.1:$BASE
X0TTA6BL4_CA_PIN=$(awk '/CA pin:/ { print $3 }' "$C/init.out")
X0TTA6BL4_API_KEY=$(grep '^x6k_' "$C/init.out")
export X0TTA6BL4_CA_PIN X0TTA6BL4_API_KEY
"$X6" control --config "$C/control.yaml" >"$OUT/logs/control.log" 2>&1 &
PIDS+=($!)
CONTROL_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((BASE + 1))/metrics" >/dev/null && break; sleep 0.1; done
printf 'grants:\n  - {src: ["*"], dst: ["*"], ports: ["*"]}\n' >"$C/policy.yaml"
"$X6" ctl policy set --file "$C/policy.yaml" >/dev/null

# Long-lived nodes n1..nN: enrolled (ctl join), then started with the others as static peers so the
# mesh forms at once; their agents report, long-poll the revocation list, policy and records.
# The node's own firewall layer admits everything; the access policy (all to all) is the other layer.
FIREWALL='{inbound: [{proto: any, port: any, any: true}], outbound: [{proto: any, port: any, any: true}]}'
nodeport() { echo $((BASE + 10 + $1)); }
metricsport() { echo $((BASE + 40 + $1)); }
for i in $(seq "$NODES"); do
  d=$OUT/n$i
  mkdir -p "$d/st"
  "$X6" keys generate --out "$d/st/node.key" >/dev/null
  "$X6" ctl token create --node-name "n$i" | tail -1 >"$d/token"
  "$X6" ctl join --url "$X0TTA6BL4_CONTROL_URL" --token-file "$d/token" --key "$d/st/node.key" --name "n$i" --out "$d/st" >/dev/null
done
declare -A NODE_PID=()
for i in $(seq "$NODES"); do
  d=$OUT/n$i
  {
    echo "control: {state: $d/st, url: \"$X0TTA6BL4_CONTROL_URL\"}"
    echo "listen: \"127.0.0.1:$(nodeport "$i")\""
    echo "admin_socket: $d/node.sock"
    echo "metrics_listen: \"127.0.0.1:$(metricsport "$i")\""
    echo "device: {mode: netstack}"
    echo "firewall: $FIREWALL"
    peers=""
    for j in $(seq "$NODES"); do
      [ "$j" -lt "$i" ] && peers="$peers{address: \"127.0.0.1:$(nodeport "$j")\", cert: $OUT/n$j/st/node.crt}, "
    done
    echo "peers: [${peers%, }]"
  } >"$d/node.yaml"
  "$X6" node --config "$d/node.yaml" >"$OUT/logs/n$i.log" 2>&1 &
  PIDS+=($!)
  NODE_PID[n$i]=$!
done
for _ in $(seq 100); do
  "$X6" ping -c 1 --socket "$OUT/n1/node.sock" "n$NODES" >/dev/null 2>&1 && break
  sleep 0.3
done
"$X6" peers --socket "$OUT/n1/node.sock" | tee "$OUT/peers-start.txt" >&2

# Traffic: a ring of pings.
for i in $(seq "$NODES"); do
  j=$((i % NODES + 1))
  (
    while true; do "$X6" ping -c 5 --socket "$OUT/n$i/node.sock" "n$j" >>"$OUT/logs/ping-n$i.log" 2>&1 || true; sleep 1; done
  ) &
  HELPERS+=($!)
done
# Readers of the mesh view.
(
  while true; do
    "$X6" ctl status >/dev/null 2>>"$OUT/logs/reader.log" || echo "status failed $(date +%T)" >>"$OUT/logs/reader.log"
    "$X6" ctl nodes >/dev/null 2>>"$OUT/logs/reader.log" || echo "nodes failed $(date +%T)" >>"$OUT/logs/reader.log"
    sleep 1
  done
) &
HELPERS+=($!)
# Churn: enrol, run, revoke, stop.
(
  k=0
  while true; do
    k=$((k + 1)); name=e$k; d=$OUT/churn/$name
    mkdir -p "$d"
    {
      echo "control: {state: $d/st}"
      echo "listen: \"127.0.0.1:$((BASE + 80 + k % 10))\""
      echo "admin_socket: $d/node.sock"
      echo "device: {mode: netstack}"
      echo "firewall: $FIREWALL"
      echo "peers: [{address: \"127.0.0.1:$(nodeport 1)\", cert: $OUT/n1/st/node.crt}]"
    } >"$d/node.yaml"
    if tok=$("$X6" ctl token create --node-name "$name" 2>>"$OUT/logs/churn.log" | tail -1); then
      X0TTA6BL4_JOIN_TOKEN=$tok "$X6" node --config "$d/node.yaml" --join "$X0TTA6BL4_CONTROL_URL" --token "$tok" --name "$name" >"$d/log" 2>&1 &
      pid=$!
      echo "$pid" >"$OUT/churn.pid"
      sleep "$CHURN_LIFE"
      if "$X6" ctl revoke "$name" >>"$OUT/logs/churn.log" 2>&1; then echo "$(date +%T) $name enrolled and revoked" >>"$OUT/logs/churn.log"
      else echo "$(date +%T) $name: revoke failed" >>"$OUT/logs/churn.log"; fi
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
      rm -rf "$d"
    else
      echo "$(date +%T) $name: token create failed" >>"$OUT/logs/churn.log"
    fi
    sleep $((CHURN_EVERY > CHURN_LIFE ? CHURN_EVERY - CHURN_LIFE : 1))
  done
) &
HELPERS+=($!)

# Sampling.
sample() { # sample T NAME PID METRICSPORT
  local rss fds gr
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$3/status" 2>/dev/null) || return 0
  fds=$(find "/proc/$3/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  gr=$(curl -sf --max-time 5 "http://127.0.0.1:$4/metrics" | awk '/^go_goroutines / { print $2 }')
  echo "$1,$2,${rss:-0},$fds,${gr:-0}" >>"$CSV"
}
echo "t,process,rss_kb,fds,goroutines" >"$CSV"
log "soak for ${DURATION}s; output in $OUT"
start=$(date +%s)
while true; do
  t=$(($(date +%s) - start))
  [ "$t" -gt "$DURATION" ] && break
  kill -0 "$CONTROL_PID" 2>/dev/null || die "the control plane exited (logs/control.log)"
  sample "$t" control "$CONTROL_PID" $((BASE + 1))
  for i in $(seq "$NODES"); do
    kill -0 "${NODE_PID[n$i]}" 2>/dev/null || die "node n$i exited (logs/n$i.log)"
    sample "$t" "n$i" "${NODE_PID[n$i]}" "$(metricsport "$i")"
  done
  sleep "$SAMPLE_EVERY"
done

churned=$(grep -c 'enrolled and revoked' "$OUT/logs/churn.log" || true)
pings=$(cat "$OUT"/logs/ping-n*.log | grep -c 'bytes from\|time=' || true)
{
  echo "x0tta6bl4 soak — $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${DURATION}s, $(cat "$OUT/version" 2>/dev/null)"
  echo "nodes enrolled and revoked: $churned; echo replies: $pings; reader failures: $(grep -c failed "$OUT/logs/reader.log" || true)"
} | tee "$OUT/summary.txt"
plot
status=0
check "$DURATION" | tee -a "$OUT/summary.txt" || status=1
[ "$churned" -gt 0 ] || { echo "no node was enrolled and revoked" | tee -a "$OUT/summary.txt"; status=1; }
exit $status
