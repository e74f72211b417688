#!/usr/bin/env bash
# Runs the first-start enrolment of each node deployment (the systemd unit's ExecStartPre, the compose
# nodes' command, the Helm DaemonSet's script, all as shipped) against a real control plane on
# loopback, with and without a routing area, and checks that the area the node would run with
# (routing_area in the node.yaml it is started on) is the one the control plane recorded at
# enrolment, as `ctl nodes` lists it, and that none is named when none is set.
#
#   bash .ci/deploy-enrol.sh X0TTA6BL4_BINARY HELM_BINARY      (from .ci/deploy.sh)
#
# The scripts run under sh in a scratch root: their absolute paths (/etc/x0tta6bl4, /var/lib/x0tta6bl4,
# /run/x0tta6bl4, the binary) are rewritten into it, and `x0tta6bl4 node` is replaced by a stub that
# records its arguments instead of starting a node.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
helm=$(realpath "$2")

w=$(mktemp -d)
cpid=
cleanup() {
  if [ -n "$cpid" ]; then kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
  rm -rf "$w"
}
trap cleanup EXIT

# A control plane on a free loopback port (a port taken meanwhile makes it exit: try another).
mkdir -p "$w/cp"
for attempt in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  printf 'listen: "127.0.0.1:%d"\ndata_dir: data\n' "$port" >"$w/cp/control.yaml"
  if [ ! -s "$w/cp/init.out" ]; then
    "$bin" control init --config "$w/cp/control.yaml" --trust-domain ci.example.org --admin ci >"$w/cp/init.out"
  fi
  "$bin" control --config "$w/cp/control.yaml" 2>"$w/cp/control.log" &
  cpid=$!
  export X0TTA6BL4_CONTROL_URL="https://127.0.0.1:$port"
  export X0TTA6BL4_CA_PIN=$(sed -n 's/^CA pin: *//p' "$w/cp/init.out")
  export X0TTA6BL4_API_KEY=$(awk '/^admin / { getline; print; exit }' "$w/cp/init.out")
  for _ in $(seq 100); do
    "$bin" ctl nodes >/dev/null 2>&1 && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  "$bin" ctl nodes >/dev/null 2>&1 && break
  kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; cpid=
  [ "$attempt" = 5 ] && { echo "the control plane did not come up:"; cat "$w/cp/control.log"; exit 1; }
done
url=$X0TTA6BL4_CONTROL_URL

# enrol NAME WANT SCRIPT [VAR=VALUE…]: runs SCRIPT (first-start shell text) in a scratch root with a
# join token for NAME in X0TTA6BL4_JOIN_TOKEN and in $ROOT/etc/tokens/NAME, then checks that the node
# would start on a node.yaml whose routing_area is WANT ("-": none), and that `ctl nodes` lists
# NAME with that area from its enrolment.
enrol() {
  local name=$1 want=$2 script=$3 r=$w/$1
  shift 3
  mkdir -p "$r/etc/tokens" "$r/state" "$r/run" "$r/bin"
  [ -e "$r/etc/node.yaml" ] || { echo "$name: no node.yaml in the scratch root"; exit 1; }
  local tok
  tok=$("$bin" ctl token create --node-name "$name" | tail -1)
  printf '%s\n' "$tok" >"$r/etc/tokens/$name"
  printf '#!/bin/sh\nif [ "$1" = node ]; then echo "$*" >"%s/node.args"; exit 0; fi\nexec "%s" "$@"\n' "$r" "$bin" >"$r/bin/x0tta6bl4"
  chmod +x "$r/bin/x0tta6bl4"
  printf '%s\n' "$script" | sed -e "s#/usr/local/bin/busybox cat#cat#g" \
    -e "s#/usr/\(local/\)\{0,1\}bin/x0tta6bl4#$r/bin/x0tta6bl4#g" -e "s#/etc/x0tta6bl4#$r/etc#g" \
    -e "s#/var/lib/x0tta6bl4#$r/state#g" -e "s#/run/x0tta6bl4#$r/run#g" -e "s#https://control:8443#$url#g" >"$r/first-start.sh"
  (cd "$r" && env -u X0TTA6BL4_CONTROL_URL -u X0TTA6BL4_CA_PIN -u X0TTA6BL4_API_KEY PATH="$r/bin:$PATH" \
    X0TTA6BL4_JOIN_TOKEN="$tok" "$@" sh "$r/first-start.sh" >"$r/out" 2>&1) ||
    { echo "$name: the first-start script failed:"; cat "$r/out"; exit 1; }
  [ -s "$r/state/bundle.json" ] || { echo "$name: no bundle written"; cat "$r/out"; exit 1; }
  local cfg area listed
  if [ -s "$r/node.args" ]; then
    cfg=$(sed -n 's/^node .*--config \([^ ]*\).*/\1/p' "$r/node.args")
  else
    cfg=$r/etc/node.yaml # the systemd unit: ExecStart is checked to read the same file below
  fi
  area=$(sed -n 's/^routing_area: *\([0-9]*\) *$/\1/p' "$cfg")
  [ "${area:--}" = "$want" ] || { echo "$name: the node would start on $cfg with routing_area '${area:--}', want '$want'"; exit 1; }
  listed=$("$bin" ctl nodes | awk -v n="$name" '$1 == n { a = $3; if ($4 ~ /^\(/) a = a " " $4; print a }')
  local expect="$want (enrolment)"
  [ "$want" = - ] && expect=-
  [ "$listed" = "$expect" ] || { echo "$name: ctl nodes lists area '$listed', want '$expect'"; cat "$r/out"; exit 1; }
  echo "-- $name: node.yaml routing_area ${area:--}, control plane: $listed"
}

echo "-- systemd unit"
unit=deploy/systemd/x0tta6bl4-node.service
pre=$(sed -n "s/^ExecStartPre=\/bin\/sh -c '\(.*\)'$/\1/p" "$unit")
start_cfg=$(sed -n 's/^ExecStart=.* --config \([^ ]*\).*/\1/p' "$unit")
[ -n "$pre" ] && [ "$start_cfg" = /etc/x0tta6bl4/node.yaml ] || { echo "$unit: no ExecStartPre script, or ExecStart not on /etc/x0tta6bl4/node.yaml"; exit 1; }
for c in "sd-none -" "sd-area 4"; do
  set -- $c
  mkdir -p "$w/$1/etc"
  if [ "$2" = - ]; then cp deploy/node.yaml "$w/$1/etc/node.yaml"
  else sed "s/^# routing_area: 3$/routing_area: $2/" deploy/node.yaml >"$w/$1/etc/node.yaml"; fi
  enrol "$1" "$2" "$pre" STATE_DIRECTORY="$w/$1/state" X0TTA6BL4_JOIN_URL="$url" X0TTA6BL4_NODE_NAME="$1"
done

echo "-- compose nodes"
# n1's command block (n2, n3 share it through the YAML anchor), with compose's \$\$ escapes undone.
compose_cmd=$(awk '/^  n1: &node$/ { n = 1 } n && /^    command:$/ { c = 1; next } c && /^      - \|$/ { b = 1; next }
  b && /^    [a-z]/ { exit } b { sub(/^        /, ""); print }' deploy/docker-compose.yml | sed 's/\$\$/$/g')
for n in 1 2 3; do
  grep -q "ROUTING_AREA: \"\${N${n}_ROUTING_AREA:-}\"" deploy/docker-compose.yml || { echo "compose: n$n has no ROUTING_AREA from N${n}_ROUTING_AREA"; exit 1; }
done
for c in "co-none -" "co-area 0" "co-area-7 7"; do
  set -- $c
  mkdir -p "$w/$1/etc"
  cp deploy/compose/node.yaml "$w/$1/etc/node.yaml"
  area=$2
  [ "$area" = - ] && area=
  enrol "$1" "$2" "$compose_cmd" NODE_NAME="$1" ROUTING_AREA="$area"
done

echo "-- Helm DaemonSet"
for c in "hm-none -" "hm-area 5"; do
  set -- $c
  mkdir -p "$w/$1/etc"
  set_area=()
  [ "$2" = - ] || set_area=(--set "node.routingArea=$2")
  "$helm" template ci deploy/helm/x0tta6bl4 --namespace mesh --set "node.controlURL=$url" "${set_area[@]}" >"$w/$1/rendered.yaml"
  # The ConfigMap's node.yaml, and the node container's script.
  awk '/^kind: ConfigMap$/ { k = 1 } /^---/ { k = 0 } k && /^  node.yaml: \|$/ { b = 1; next } b && !/^    / { b = 0 } b { sub(/^    /, ""); print }' \
    "$w/$1/rendered.yaml" >"$w/$1/etc/node.yaml"
  script=$(awk '/^kind: DaemonSet$/ { k = 1 } k && /^          args:$/ { a = 1; next } a && /^            - \|$/ { b = 1; next }
    b && !/^              / { exit } b { sub(/^              /, ""); print }' "$w/$1/rendered.yaml")
  grep -q 'mountPath: /etc/x0tta6bl4, readOnly: true' "$w/$1/rendered.yaml" || { echo "helm: the ConfigMap is not mounted at /etc/x0tta6bl4"; exit 1; }
  enrol "$1" "$2" "$script" NODE_NAME="$1"
done

# Values the chart must refuse rather than render.
for bad in "node.routingArea=-1" "node.routingArea=4294967296" "node.routingArea=2.5" "node.routingArea=three"; do
  if "$helm" template ci deploy/helm/x0tta6bl4 --set "$bad" >/dev/null 2>"$w/err"; then
    echo "helm template --set $bad rendered"; exit 1
  fi
  grep -q "want a whole number from 0 to 4294967295" "$w/err" || { echo "helm template --set $bad:"; cat "$w/err"; exit 1; }
done
if "$helm" template ci deploy/helm/x0tta6bl4 --set node.routingArea=2 --set node.config.routing_area=3 >/dev/null 2>"$w/err"; then
  echo "helm template with node.routingArea and node.config.routing_area rendered"; exit 1
fi
echo "-- helm refuses bad or doubly set areas"
