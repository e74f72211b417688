#!/usr/bin/env bash
# SIGKILL loop (docs/control.md, "Crash safety"): kills the control plane with SIGKILL in the middle
# of enrolments, revocations, governance proposals and ballots, and invoice payments, ITERATIONS
# times, on SQLite and on PostgreSQL, and after each restart checks that
#   - nothing acknowledged is lost: every enrolment a client saw succeed (ctl join exit 0) is a
#     node, every revocation a client saw succeed (ctl revoke exit 0) is revoked, every proposal
#     acknowledged (ctl dao propose) exists and every ballot acknowledged (ctl dao vote) is counted
#     in its proposal, every invoice acknowledged (ctl billing invoice create) exists, and every
#     transfer on the chain is recorded once the watcher has caught up (PAY_CATCHUP seconds at most);
#   - nothing is half-applied: every node has a used token of its name, every used token a node, every
#     node a certificate serial and its account's billing row; the governance log replays (ctl dao
#     verify --genesis) and no proposal counts more ballots than its one voter; every transfer is
#     recorded exactly once, as "paid", against the invoice it was sent for, which is paid with its
#     amount, and whose account's subscription was extended exactly once (expiry = credit time +
#     the plan's duration); no invoice is paid without its payment row or subscription, and no
#     subscription exists without a paid invoice; SQLite's integrity_check says ok.
# Each voter is one governance member (key from ctl dao keygen, in the genesis roster).
# Payments go to bench/trongrid-fixture, a loopback stand-in for TronGrid (a test fixture: it
# confirms whatever it is told to, and its receipts go through the real decoder and verifier). Each
# payer invoices a fresh account for one plan and pays the exact amount to the fixture; the control
# plane's watcher polls it (billing.poll_interval 300ms; receipts solidify after 1 s, so some kills
# land while a transfer is pending and the cursor must hold). Billing is on, so enrolments need the
# "workers" account's subscription, paid through the fixture before the loop starts.
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
PAYERS=${PAYERS:-2}   # invoice and pay
PAY_CATCHUP=${PAY_CATCHUP:-60} # seconds the restarted watcher gets to record every transfer
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
if [ -n "${FIXTURE_BIN:-}" ]; then FIX_BIN=$FIXTURE_BIN; else
  GOTOOLCHAIN=auto go build -o "$OUT/trongrid-fixture" ./bench/trongrid-fixture || die "go build of the fixture failed"
  FIX_BIN=$OUT/trongrid-fixture
fi
command -v python3 >/dev/null || die "python3 is needed for the checks"
# Our receiving address: the one of the recorded TronGrid bodies (internal/billing/testdata).
RECEIVER=TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW
PGBIN=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# sql DRIVER DIR QUERY: rows as tab-separated lines.
sql() {
  if [ "$1" = sqlite ]; then
    if command -v sqlite3 >/dev/null; then sqlite3 -readonly -cmd ".timeout 10000" -separator $'\t' "$2/data/control.db" "$3"
    else python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=10); [print("\t".join(map(str,r))) for r in c.execute(sys.argv[2])]' "$2/data/control.db" "$3"; fi
  else
    as_pg "$PGBIN/psql" -h /tmp/x0tta6bl4-pg -p 55432 -U postgres -d x6kill -AtqF $'\t' -c "$3"
  fi
}

CTL_PID=""
FIX_PID=""
WORKER_PIDS=()
cleanup() {
  set +e
  for p in "${WORKER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ -n "$CTL_PID" ] && kill -9 "$CTL_PID" 2>/dev/null
  [ -n "$FIX_PID" ] && kill "$FIX_PID" 2>/dev/null
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
    tok=$("$X6" ctl token create --node-name "$name" --account workers 2>/dev/null | tail -1) || continue
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

# payer DIR ID: invoice a fresh account for the plan and pay the invoice's exact amount to the
# fixture, until killed; records each acknowledged invoice and each transfer the chain accepted.
payer() {
  local d=$1 id=$2 k=0 acct out inv amount tx
  while true; do
    k=$((k + 1)); acct="a$id-$(date +%s%N | tail -c 7)-$k"
    out=$("$X6" ctl billing invoice create --json --account "$acct" --plan "$PLAN" --network tron-usdt 2>/dev/null) || continue
    inv=$(printf '%s\n' "$out" | sed -n 's/^  "id": \([0-9]*\),$/\1/p')
    amount=$(printf '%s\n' "$out" | sed -n 's/^  "amount": "\([0-9]*\)",$/\1/p')
    [ -n "$inv" ] && [ -n "$amount" ] || continue
    echo "$inv $acct $amount" >>"$d/acked-invoice.$id"
    tx=$(curl -sf -X POST "$FIXTURE/pay?amount=$amount") || continue
    echo "$inv $tx" >>"$d/acked-pay.$id"
  done
}

# catch_up DRIVER DIR: wait until the watcher has recorded every transfer the chain holds.
catch_up() {
  local n got
  n=$(curl -sf "$FIXTURE/transfers" | grep -o '"tx_id"' | wc -l)
  for _ in $(seq $((PAY_CATCHUP * 4))); do
    got=$(sql "$1" "$2" "SELECT count(*) FROM billing_payments WHERE network = 'tron-usdt'" 2>/dev/null) || got=0
    [ "${got:-0}" -ge "$n" ] && return 0
    sleep 0.25
  done
  return 0 # the check reports what is missing
}

check() { # check DRIVER DIR: prints a verdict line; returns 1 on a violation
  local driver=$1 d=$2
  catch_up "$driver" "$d"
  curl -sf "$FIXTURE/transfers" >"$d/transfers.json" || { echo "fixture listing failed"; return 1; }
  sql "$driver" "$d" "SELECT tx_id, event_index, invoice_id, outcome, amount, recorded_at FROM billing_payments WHERE network = 'tron-usdt'" >"$d/payments.tsv" &&
    sql "$driver" "$d" "SELECT id, account, status, amount, paid_amount, plan_id FROM billing_invoices" >"$d/invoices.tsv" &&
    sql "$driver" "$d" "SELECT s.account, s.expires_at, s.updated_at, p.duration_ms FROM billing_subscriptions s JOIN billing_plans p ON p.id = s.plan_id" >"$d/subscriptions.tsv" &&
    sql "$driver" "$d" "SELECT n.name, b.account FROM nodes n JOIN billing_nodes b ON b.node_id = n.id" >"$d/billing-nodes.tsv" ||
    { echo "database dump failed"; return 1; }
  "$X6" ctl nodes --json >"$d/nodes.json" && "$X6" ctl token list --json >"$d/tokens.json" &&
    "$X6" ctl dao show --json >"$d/proposals.json" || { echo "listing failed"; return 1; }
  local verify=ok
  "$X6" ctl dao verify --genesis "$GENESIS" >"$d/verify.out" 2>&1 || verify="FAILED: $(tail -1 "$d/verify.out")"
  cat "$d"/acked-enrol.* 2>/dev/null | sort -u >"$d/acked-enrol" || true
  cat "$d"/acked-revoke.* 2>/dev/null | sort -u >"$d/acked-revoke" || true
  cat "$d"/acked-propose.* 2>/dev/null | sort -u >"$d/acked-propose" || true
  cat "$d"/acked-vote.* 2>/dev/null | sort -u >"$d/acked-vote" || true
  cat "$d"/acked-invoice.* 2>/dev/null | sort -u >"$d/acked-invoice" || true
  cat "$d"/acked-pay.* 2>/dev/null | sort -u >"$d/acked-pay" || true
  VERIFY=$verify CATCHUP=$PAY_CATCHUP python3 - "$d" <<'EOF'
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
# Billing: every node a worker enrolled is charged to "workers".
def rows(name):
    return [l.rstrip("\n").split("\t") for l in open(f"{d}/{name}") if l.strip()]
charged = {r[0]: r[1] for r in rows("billing-nodes.tsv")}
uncharged = sorted(n for n in by_name if n.startswith("w") and charged.get(n) != "workers")
if uncharged: bad.append(f"nodes without their account's billing row: {uncharged[:3]}")
# Payments: the chain is the truth; every transfer on it is recorded exactly once, as paid, against
# the invoice its payer sent it for.
chain = {t["tx_id"]: t for t in json.load(open(f"{d}/transfers.json"))}
invoices = {int(r[0]): {"account": r[1], "status": r[2], "amount": int(r[3]), "paid": int(r[4])} for r in rows("invoices.tsv")}
inv_acked = {int(l.split()[0]): (l.split()[1], int(l.split()[2])) for l in open(f"{d}/acked-invoice") if l.strip()}
sent = {l.split()[1]: int(l.split()[0]) for l in open(f"{d}/acked-pay") if l.strip()}
lost_inv = sorted(i for i in inv_acked if i not in invoices or invoices[i]["account"] != inv_acked[i][0])
if lost_inv: bad.append(f"{len(lost_inv)} acknowledged invoices lost: {lost_inv[:3]}")
pays = {}
for r in rows("payments.tsv"):
    pays.setdefault(r[0], []).append({"event": int(r[1]), "invoice": int(r[2]), "outcome": r[3], "amount": int(r[4]), "at": int(r[5])})
unsent = sorted(set(sent) - set(chain))
if unsent: bad.append(f"acknowledged transfers missing from the chain: {unsent[:3]}")
unrecorded = sorted(tx for tx in chain if tx not in pays)
if unrecorded: bad.append(f"{len(unrecorded)} transfers not recorded within {os.environ['CATCHUP']} s: {unrecorded[:3]}")
stray = sorted(tx for tx in pays if tx not in chain)
if stray: bad.append(f"payments recorded for transfers the chain never made: {stray[:3]}")
credits = {}  # invoice -> payments crediting it
for tx, ps in pays.items():
    if len(ps) != 1: bad.append(f"transfer {tx[:12]} recorded {len(ps)} times")
    for p in ps:
        t = chain.get(tx)
        if p["outcome"] != "paid": bad.append(f"transfer {tx[:12]} recorded as {p['outcome']}, not paid")
        if t and p["amount"] != int(t["amount"]): bad.append(f"transfer {tx[:12]} recorded with amount {p['amount']}, sent {t['amount']}")
        if tx in sent and p["invoice"] != sent[tx]: bad.append(f"transfer {tx[:12]} credited to invoice {p['invoice']}, sent for {sent[tx]}")
        if p["outcome"] in ("paid", "overpaid"): credits.setdefault(p["invoice"], []).append(p)
subs = {r[0]: {"expires": int(r[1]), "updated": int(r[2]), "duration": int(r[3])} for r in rows("subscriptions.tsv")}
paid_by_account = {}
for i, v in invoices.items():
    c = credits.get(i, [])
    if v["status"] == "paid":
        paid_by_account.setdefault(v["account"], []).append(i)
        if len(c) != 1: bad.append(f"invoice {i} paid with {len(c)} crediting payments")
        elif v["paid"] != v["amount"] or c[0]["amount"] != v["amount"]: bad.append(f"invoice {i} paid {v['paid']} of {v['amount']}")
        if v["account"] not in subs: bad.append(f"invoice {i} paid but account {v['account']} has no subscription")
    elif c: bad.append(f"invoice {i} is {v['status']} but credited by {len(c)} payments")
for acct, s in subs.items():
    paid = paid_by_account.get(acct, [])
    if len(paid) != 1: bad.append(f"subscription of {acct} with {len(paid)} paid invoices (each account pays once)")
    elif len(credits.get(paid[0], [])) == 1 and (s["expires"] != credits[paid[0]][0]["at"] + s["duration"] or s["updated"] != credits[paid[0]][0]["at"]):
        bad.append(f"subscription of {acct} expires {s['expires']}, want credit time {credits[paid[0]][0]['at']} + {s['duration']} ms (extended once)")
if len(bad) > 12: bad = bad[:12] + [f"… {len(bad) - 12} more"]
nrev = sum(1 for n in nodes if is_revoked(n))
nballots = sum(p.get("ballots", 0) for p in props.values())
npaid = sum(1 for v in invoices.values() if v["status"] == "paid")
print(f"nodes {len(nodes)} (revoked {nrev}), acknowledged enrolments {len(acked)}, revocations {len(revoked_acked)}; "
      f"proposals {len(props)}, ballots {nballots}, acknowledged proposals {len(props_acked)}, ballots {len(votes_acked)}; "
      f"invoices {len(invoices)} (paid {npaid}), acknowledged {len(inv_acked)}, transfers {len(chain)}, recorded {sum(len(p) for p in pays.values())}, subscriptions {len(subs)}; checks: "
      + ("ok" if not bad else "VIOLATION " + "; ".join(bad)))
sys.exit(1 if bad else 0)
EOF
}

status=0
for driver in $DRIVERS; do
  d=$OUT/$driver
  mkdir -p "$d/keys" "$d/bundles"
  # A fresh chain per driver: the fixture's ledger lives in its memory, which the kills never touch.
  [ -n "$FIX_PID" ] && { kill "$FIX_PID"; wait "$FIX_PID" 2>/dev/null || true; }
  rm -f "$d/fixture.addr"
  "$FIX_BIN" -listen "127.0.0.1:$((BASE + 2))" -to "$RECEIVER" -solidify-after 1s -addr-file "$d/fixture.addr" 2>"$d/fixture.log" &
  FIX_PID=$!
  for _ in $(seq 100); do [ -s "$d/fixture.addr" ] && break; sleep 0.1; done
  [ -s "$d/fixture.addr" ] || die "trongrid-fixture not up: $(cat "$d/fixture.log")"
  FIXTURE=http://$(cat "$d/fixture.addr")
  db="database: {driver: sqlite}"
  if [ "$driver" = postgres ]; then
    eval "$(bash .ci/postgres.sh)"
    # A database of its own for this run, dropped at the start of the next.
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
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
billing:
  enabled: true
  poll_interval: 300ms
  max_backoff: 2s
  max_open_invoices_per_account: 10
  tron: {address: $RECEIVER, base_url: "$FIXTURE"}
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
  # One plan for everything; the workers' enrolments are charged to an account paid through the
  # fixture before the first kill.
  PLAN=$("$X6" ctl billing plan create --json --name kill --price-usdt 1000000 --node-quota 1000000 --duration 720h |
    sed -n 's/^  "id": \([0-9]*\),$/\1/p')
  [ -n "$PLAN" ] || die "plan create failed"
  out=$("$X6" ctl billing invoice create --json --account workers --plan "$PLAN" --network tron-usdt) || die "invoice create failed"
  inv=$(printf '%s\n' "$out" | sed -n 's/^  "id": \([0-9]*\),$/\1/p')
  amount=$(printf '%s\n' "$out" | sed -n 's/^  "amount": "\([0-9]*\)",$/\1/p')
  echo "$inv workers $amount" >"$d/acked-invoice.0"
  tx=$(curl -sf -X POST "$FIXTURE/pay?amount=$amount") || die "paying the workers' invoice failed"
  echo "$inv $tx" >"$d/acked-pay.0"
  for _ in $(seq 300); do
    "$X6" ctl billing subscription workers 2>/dev/null | grep -Eq '^status[[:space:]]+active' && break
    sleep 0.2
  done
  "$X6" ctl billing subscription workers 2>/dev/null | grep -Eq '^status[[:space:]]+active' || die "the workers' invoice was not credited within 60 s"
  for i in $(seq "$ITERATIONS"); do
    WORKER_PIDS=()
    for w in $(seq "$WORKERS"); do worker "$d" "$w" & WORKER_PIDS+=($!); done
    for w in $(seq "$VOTERS"); do voter "$d" "$w" & WORKER_PIDS+=($!); done
    for w in $(seq "$PAYERS"); do payer "$d" "$w" & WORKER_PIDS+=($!); done
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
    if line=$(check "$driver" "$d"); then echo "$driver kill $i:$integrity $line"; else echo "$driver kill $i:$integrity $line"; status=1; fi
  done
  kill "$CTL_PID"; wait "$CTL_PID" 2>/dev/null || true; CTL_PID=""
  echo "$driver: $ITERATIONS SIGKILLs, $(wc -l <"$d/acked-enrol") acknowledged enrolments, $(wc -l <"$d/acked-revoke") acknowledged revocations, $(wc -l <"$d/acked-propose") proposals, $(wc -l <"$d/acked-vote") ballots, $(wc -l <"$d/acked-invoice") invoices, $(wc -l <"$d/acked-pay") payments"
done
exit $status
