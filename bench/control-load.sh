#!/usr/bin/env bash
# Load test of the control plane on loopback: GET /health and the authenticated GET /api/v1/users/me,
# over TLS 1.3 (X25519MLKEM768, ML-DSA-65) and over plain HTTP (--insecure-dev), reporting
# requests/s and latency percentiles. Each endpoint runs for DURATION (default 10s, at most 60s)
# with CONNS keep-alive connections (default 32). The server runs in the load generator's process
# (bench/control-load), so both share this machine's cores.
#
#   bash bench/control-load.sh                # both modes
#   DURATION=5s CONNS=64 bash bench/control-load.sh
#   bash bench/control-load.sh --url https://127.0.0.1:8443 --ca-pin PIN   # an already running one
#                                                                          # (API key in X0TTA6BL4_API_KEY)
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
bin=$(mktemp -d)/control-load
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/control-load
if [ $# -gt 0 ]; then
  exec "$bin" --duration "$DURATION" --conns "$CONNS" "$@"
fi
"$bin" --duration "$DURATION" --conns "$CONNS"
"$bin" --duration "$DURATION" --conns "$CONNS" --plain
