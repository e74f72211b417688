#!/usr/bin/env bash
# Churn on a real mesh (docs/testing.md, "The chaos lab"): runs TestNetnsChaos (internal/node) RUNS
# times and prints every run's per-phase table. Eight nodes, each in its own network namespace with a
# kernel TUN device, in a ring with two chords; UDP and TCP flows across relays while links are cut,
# a relay is killed, a link flaps, the mesh is partitioned, a link loses 30 %, every node is restarted
# in turn and a stream's destination is restarted. Each run takes about 1.5 minutes.
#
#   sudo bench/chaos.sh                      # two runs
#   RUNS=5 sudo -E bench/chaos.sh
#   OUT=DIR ...                              # where the tables (chaos.md) and each run's log go
#
# A run whose assertions fail still prints its table; the script lists the failed assertions of
# each run and exits 1 if any run failed.
#
# Needs root, /dev/net/tun, iproute2, nftables and Go (GOTOOLCHAIN=auto). Traffic stays inside the
# namespaces the test creates, and the test removes them when it ends, failed or not.
set -euo pipefail
export LC_ALL=C GOTOOLCHAIN=auto
cd "$(dirname "$0")/.."

RUNS=${RUNS:-2}
OUT=${OUT:-$(mktemp -d /tmp/x6chaos.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "bench/chaos.sh needs root (network namespaces, TUN devices)" >&2
  exit 2
fi
for tool in ip nft; do
  command -v "$tool" >/dev/null || { echo "bench/chaos.sh needs $tool (iproute2, nftables)" >&2; exit 2; }
done

bin=$OUT/node.test
echo "== building the internal/node test binary ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
go test -c -o "$bin" ./internal/node/

report=$OUT/chaos.md
: >"$report"
failed=0
for i in $(seq "$RUNS"); do
  echo "== run $i of $RUNS"
  log=$OUT/run$i.log
  if X6_CHAOS_REPORT=$report "$bin" -test.run '^TestNetnsChaos$' -test.v -test.count 1 -test.timeout 10m >"$log" 2>&1; then
    echo "run $i: every assertion held"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED ($log):"
    # The assertions' messages: the test's log lines, less its progress (phase "...") and the node logs.
    grep -E '^\s+netns_(chaos_)?test\.go:[0-9]+: .' "$log" | grep -vE ': phase "|netns_test\.go:[0-9]+: --- ' | sed 's/^ */  /' || true
  fi
done
echo
cat "$report"
echo "== $((RUNS - failed)) of $RUNS runs held every assertion; tables in $report, logs in $OUT"
[ "$failed" = 0 ]
