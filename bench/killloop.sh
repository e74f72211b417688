#!/usr/bin/env bash
# SIGKILL loop (docs/control.md, "Crash safety"): kills the control plane with SIGKILL in the middle
# of enrolments, revocations, governance proposals and ballots, ITERATIONS times, on SQLite and on
# PostgreSQL, and after each restart checks that
#   - nothing acknowledged is lost: every enrolment a client saw succeed (ctl join exit 0) is a
#     node, every revocation a client saw succeed (ctl revoke exit 0) is revoked, every proposal
#     acknowledged (ctl dao propose) exists and every ballot acknowledged (ctl dao vote) is counted
#     in its proposal;
#   - nothing is half-applied: every node has a used token of its name, every used token a node, every
#     node a certificate serial; the governance log replays (ctl dao verify --genesis) and no
#     proposal counts more ballots than its one voter; SQLite's integrity_check says ok.
# Each voter is one governance member (key from ctl dao keygen, in the genesis roster).
# Billing payments are not exercised yet (they need a simulated TRON/TON provider).
# It prints one line per iteration and a summary per driver; exit 1 on any violation.
#
#   bash bench/killloop.sh                     # 20 iterations on each driver
#   ITERATIONS=50 DRIVERS=postgres bash bench/killloop.sh
#   X6_BIN=/path/to/x0tta6bl4 OUT=DIR ...
#
# PostgreSQL comes from .ci/postgres.sh (installs Debian's package, throw-away cluster on
# 127.0.0.1:55432). Everything listens on 127.0.0.1 only.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

ITERATIONS=${ITERATIONS:-20}
DRIVERS=${DRIVERS:-"sqlite postgres"}
WORKERS=${WORKERS:-4} # enrol and revoke
VOTERS=${VOTERS:-2}   # governance members proposing and voting
# The kill comes a random time in [KILL_MIN, KILL_MAX] seconds after the workers start; one
# enrolment takes ~0.3 s on an idle machine and several seconds on a loaded one.
KILL_MIN=${KILL_MIN:-3} KILL_MAX=${KILL_MAX:-8}
OUT=${OUT:-/tmp/x6kill.$(date +%Y%m%d-%H%M%S)}
BASE=${BASE_PORT:-$((30000 + ($$ % 200) * 10))}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
die() { echo "killloop.sh: $*" >&2; exit 1; }

if [ -n "${X6_BIN:-}" ]; then X6=$X6_BIN; else
  GOTOOLCHAIN=auto go build -o "$OUT/x0tta6bl4" ./cmd/x0tta6bl4 || die "go build failed"
  X6=$OUT/x0tta6bl4
fi
command -v python3 >/dev/null || die "python3 is needed for the checks"

CTL_PID=""
WORKER_PIDS=()
cleanup() {
  set +e
  for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$CTL_PID" ] && kill -9 "$CTL_PID" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT

start_control() { # start_control DIR
  "$X6" control --config "$1/control.yaml" >>"$1/control.log" 2>&1 &
  CTL_PID=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$((BASE + 1))/metrics" >/dev/null 2>&1 && return 0
    kill -0 "$CTL_PID" 2>/dev/null || die "control plane exited: $(tail -3 "$1/control.log")"
    sleep 0.1
  done
  die "control plane not up after 30 s"
}

# worker DIR ID: enrol fresh nodes and revoke every other one it enrolled (the first, third, …), until killed; records
# each acknowledged step.
worker() {
  local d=$1 id=$2 k=0 name tok
  while true; do
    k=$((k + 1)); name="w$id-$(date +%s%N | tail -c 7)-$k"
    tok=$("$X6" ctl token create --node-name "$name" 2>/dev/null | tail -1) || continue
    "$X6" keys generate --out "$d/keys/$name.key" >/dev/null 2>&1 || continue
    if X0TTA6BL4_JOIN_TOKEN=$tok "$X6" ctl join --url "$X0TTA6BL4_CONTROL_URL" --key "$d/keys/$name.key" --name "$name" \
      --out "$d/bundles/$name" >/dev/null 2>&1; then
      echo "$name" >>"$d/acked-enrol.$id"
      if [ $((k % 2)) = 1 ] && "$X6" ctl revoke "$name" >/dev/null 2>&1; then echo "$name" >>"$d/acked-revoke.$id"; fi
    fi
  done
}

# voter DIR ID: as governance member mID, put proposals that only it votes on (one of several equal
# members: each stays active) and vote yes on each, until killed; records each acknowledged step.
voter() {
  local d=$1 id=$2 k=0 name pid
  while true; do
    k=$((k + 1)); name="p$id-$(date +%s%N | tail -c 7)-$k"
    pid=$("$X6" ctl dao propose --json --title "$name" --action model --model-name "$name" \
      --model-sha256 "$(printf %s "$name" | sha256sum | cut -c1-64)" 2>/dev/null |
      sed -n 's/^  "id": "\([0-9a-f]\{64\}\)",$/\1/p') && [ -n "$pid" ] || continue
    echo "$pid" >>"$d/acked-propose.$id"
    if "$X6" ctl dao vote --key "$d/members/m$id.key" --proposal "$pid" --choice yes >/dev/null 2>&1; then
      echo "$pid" >>"$d/acked-vote.$id"
    fi
  done
}

check() { # check DIR: prints a verdict line; returns 1 on a violation
  local d=$1
  "$X6" ctl nodes --json >"$d/nodes.json" && "$X6" ctl token list --json >"$d/tokens.json" &&
    "$X6" ctl dao show --json >"$d/proposals.json" || { echo "listing failed"; return 1; }
  local verify=ok
  "$X6" ctl dao verify --genesis "$GENESIS" >"$d/verify.out" 2>&1 || verify="FAILED: $(tail -1 "$d/verify.out")"
  cat "$d"/acked-enrol.* 2>/dev/null | sort -u >"$d/acked-enrol" || true
  cat "$d"/acked-revoke.* 2>/dev/null | sort -u >"$d/acked-revoke" || true
  cat "$d"/acked-propose.* 2>/dev/null | sort -u >"$d/acked-propose" || true
  cat "$d"/acked-vote.* 2>/dev/null | sort -u >"$d/acked-vote" || true
  VERIFY=$verify python3 - "$d" <<'EOF'
import json, sys, os
d = sys.argv[1]
nodes = json.load(open(f"{d}/nodes.json"))
nodes = nodes.get("nodes", nodes) if isinstance(nodes, dict) else nodes
tokens = json.load(open(f"{d}/tokens.json"))
tokens = tokens.get("tokens", tokens) if isinstance(tokens, dict) else tokens
acked = set(open(f"{d}/acked-enrol").read().split())
revoked_acked = set(open(f"{d}/acked-revoke").read().split())
by_name = {n["name"]: n for n in nodes}
bad = []
lost = sorted(acked - set(by_name))
if lost: bad.append(f"{len(lost)} acknowledged enrolments lost: {lost[:3]}")
def is_revoked(n):
    return bool(n.get("revoked_at")) or n.get("status") == "revoked" or n.get("revoked") is True
unrevoked = sorted(x for x in revoked_acked if x in by_name and not is_revoked(by_name[x]))
if unrevoked: bad.append(f"{len(unrevoked)} acknowledged revocations lost: {unrevoked[:3]}")
used = {t["node_name"] for t in tokens if t.get("used_at")}
no_token = sorted(n for n in by_name if n.startswith("w") and n not in used)
if no_token: bad.append(f"nodes without a used token: {no_token[:3]}")
no_node = sorted(t for t in used if t not in by_name)
if no_node: bad.append(f"used tokens without a node: {no_node[:3]}")
no_cert = sorted(n["name"] for n in nodes if not (n.get("serial") or n.get("cert_expires") or n.get("not_after")))
if no_cert: bad.append(f"nodes without a certificate: {no_cert[:3]}")
props = json.load(open(f"{d}/proposals.json"))
props = {p["id"]: p for p in ((props.get("proposals") if isinstance(props, dict) else props) or [])}
props_acked = set(open(f"{d}/acked-propose").read().split())
votes_acked = set(open(f"{d}/acked-vote").read().split())
lost_props = sorted(props_acked - set(props))
if lost_props: bad.append(f"{len(lost_props)} acknowledged proposals lost: {lost_props[:3]}")
lost_votes = sorted(p for p in votes_acked if props.get(p, {}).get("ballots", 0) < 1)
if lost_votes: bad.append(f"{len(lost_votes)} acknowledged ballots lost: {lost_votes[:3]}")
# Only the proposing member votes, once: more than one ballot would be a duplicate.
dup = sorted(p for p, v in props.items() if v.get("ballots", 0) > 1)
if dup: bad.append(f"proposals with more ballots than voters: {dup[:3]}")
if os.environ["VERIFY"] != "ok": bad.append("dao verify " + os.environ["VERIFY"])
nrev = sum(1 for n in nodes if is_revoked(n))
nballots = sum(p.get("ballots", 0) for p in props.values())
print(f"nodes {len(nodes)} (revoked {nrev}), acknowledged enrolments {len(acked)}, revocations {len(revoked_acked)}; "
      f"proposals {len(props)}, ballots {nballots}, acknowledged proposals {len(props_acked)}, ballots {len(votes_acked)}, log verifies: "
      + ("ok" if not bad else "VIOLATION " + "; ".join(bad)))
sys.exit(1 if bad else 0)
EOF
}

status=0
for driver in $DRIVERS; do
  d=$OUT/$driver
  mkdir -p "$d/keys" "$d/bundles"
  db="database: {driver: sqlite}"
  if [ "$driver" = postgres ]; then
    eval "$(bash .ci/postgres.sh)"
    # A database of its own for this run, dropped at the start of the next.
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    as_pg "$PGBIN/psql" -h /tmp/x0tta6bl4-pg -p 55432 -U postgres -qc "DROP DATABASE IF EXISTS x6kill" >/dev/null
    as_pg "$PGBIN/psql" -h /tmp/x0tta6bl4-pg -p 55432 -U postgres -qc "CREATE DATABASE x6kill OWNER x0tta6bl4" >/dev/null
    db="database: {driver: postgres, dsn: \"${X0TTA6BL4_TEST_POSTGRES%/*}/x6kill?sslmode=disable\"}"
  fi
  cat >"$d/control.yaml" <<EOF
listen: "127.0.0.1:$BASE"
data_dir: data
$db
metrics: {listen: "127.0.0.1:$((BASE + 1))"}
rate_limits: {per_ip: {rate: 100000, burst: 100000}, per_key: {rate: 100000, burst: 100000}, auth: {rate: 100000, burst: 100000}}
enrollment: {max_pending_tokens: 100000}
EOF
  mkdir -p "$d/members"
  members=()
  for w in $(seq "$VOTERS"); do
    "$X6" ctl dao keygen --out "$d/members/m$w.key" >/dev/null 2>&1 || die "dao keygen failed"
    members+=(--dao-member "m$w=$d/members/m$w.pub")
  done
  "$X6" control init --config "$d/control.yaml" --trust-domain kill.test --admin killer "${members[@]}" >"$d/init.out" 2>&1 || die "init: $(cat "$d/init.out")"
  GENESIS=$(awk '/^genesis roster:/ { print $3 }' "$d/init.out")
  case $GENESIS in /*) ;; *) GENESIS=$d/$GENESIS ;; esac
  export X0TTA6BL4_CONTROL_URL=https://127.0.0.1:$BASE
  X0TTA6BL4_CA_PIN=$(awk '/CA pin:/ { print $3 }' "$d/init.out")
  X0TTA6BL4_API_KEY=$(grep '^x6k_' "$d/init.out")
  export X0TTA6BL4_CA_PIN X0TTA6BL4_API_KEY
  start_control "$d"
  for i in $(seq "$ITERATIONS"); do
    WORKER_PIDS=()
    for w in $(seq "$WORKERS"); do worker "$d" "$w" & WORKER_PIDS+=($!); done
    for w in $(seq "$VOTERS"); do voter "$d" "$w" & WORKER_PIDS+=($!); done
    sleep "$(awk -v s="$RANDOM" -v a="$KILL_MIN" -v b="$KILL_MAX" 'BEGIN { srand(s); printf "%.2f", a + rand() * (b - a) }')"
    kill -9 "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true
    sleep 0.5 # let the clients see the dead connection and fail
    for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait "${WORKER_PIDS[@]}" 2>/dev/null || true
    integrity=""
    if [ "$driver" = sqlite ]; then
      integrity=" integrity_check $(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])' "$d/data/control.db"),"
      [[ $integrity == *" ok,"* ]] || status=1
    fi
    start_control "$d"
    if line=$(check "$d"); then echo "$driver kill $i:$integrity $line"; else echo "$driver kill $i:$integrity $line"; status=1; fi
  done
  kill "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true; CTL_PID=""
  echo "$driver: $ITERATIONS SIGKILLs, $(wc -l <"$d/acked-enrol") acknowledged enrolments, $(wc -l <"$d/acked-revoke") acknowledged revocations, $(wc -l <"$d/acked-propose") proposals, $(wc -l <"$d/acked-vote") ballots"
done
exit $status
