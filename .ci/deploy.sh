#!/usr/bin/env bash
# Checks the deployment files (docs/control.md, "Deployment"): the systemd units with
# systemd-analyze verify and security, the Helm chart with helm lint and kubeconform against the
# schemas of a current Kubernetes release, the compose file against the Compose Specification, and
# each node deployment's first-start enrolment against a control plane (.ci/deploy-enrol.sh).
# CI runs it from .ci/run; by hand: bash .ci/deploy.sh. Tools come through the Go module proxy at
# pinned versions (docs/dependencies.md, "Deployment checks"); systemd from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto

HELM=helm.sh/helm/v4/cmd/helm@v4.3.2
KUBECONFORM=github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
COMPOSE_SPEC=github.com/compose-spec/compose-go/v2/cmd@v2.16.2
# The Kubernetes release whose OpenAPI document (api/openapi-spec/swagger.json in the module) the
# chart is checked against.
K8S=v1.37.2
# Highest acceptable `systemd-analyze security` exposure (0 = locked down, 10 = unprotected).
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Each tool is built once (go install at its pinned version) and run from $tmp/bin.
tool() { # tool MODULE/CMD@VERSION NAME
  [ -x "$tmp/bin/$2" ] || { GOBIN="$tmp/bin.$2" go install "$1" && mv "$tmp/bin.$2/"* "$tmp/bin/$2"; }
}
mkdir -p "$tmp/bin"

echo "== systemd units"
if ! command -v systemd-analyze >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else echo "systemd-analyze is missing (apt-get install systemd)"; exit 1; fi
fi
systemd-analyze --version | head -1
go build -o "$tmp/x0tta6bl4" ./cmd/x0tta6bl4
for unit in deploy/systemd/*.service; do
  name=$(basename "$unit")
  # verify checks that ExecStart's binary exists: point the unit at the one just built.
  mkdir -p "$tmp/units"
  sed -E "s#/usr/(local/)?bin/x0tta6bl4#$tmp/x0tta6bl4#g" "$unit" >"$tmp/units/$name"
  echo "-- systemd-analyze verify $name"
  systemd-analyze verify "$tmp/units/$name"
  echo "-- systemd-analyze security $name"
  systemd-analyze security --offline=yes "$unit" | grep -v '✓' | sed 's/ *$//'
  score=$(systemd-analyze security --offline=yes "$unit" | awk '/Overall exposure level/ { print $(NF-2) }')
  awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s + 0 <= m + 0) }' || {
    echo "$name: exposure $score is above $MAX_EXPOSURE"; exit 1; }
done

echo "== helm lint ($HELM)"
tool "$HELM" helm
chart=deploy/helm/x0tta6bl4
"$tmp/bin/helm" lint --strict "$chart"
"$tmp/bin/helm" lint --strict "$chart" -f deploy/helm/ci-values.yaml

echo "== kubeconform ($KUBECONFORM) against Kubernetes $K8S"
tool "$KUBECONFORM" kubeconform
spec=$(cd "$tmp" && go mod download -json "k8s.io/kubernetes@$K8S" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -f "$spec/api/openapi-spec/swagger.json" ] || { echo "no swagger.json in k8s.io/kubernetes@$K8S"; exit 1; }
go run ./deploy/kubeschema -in "$spec/api/openapi-spec/swagger.json" -out "$tmp/schemas/$K8S-standalone-strict"
for values in "" deploy/helm/ci-values.yaml; do
  "$tmp/bin/helm" template ci "$chart" --namespace mesh ${values:+-f "$values"} >"$tmp/rendered.yaml"
  echo "-- rendered with ${values:-the default values}: $(grep -c '^kind:' "$tmp/rendered.yaml") objects"
  "$tmp/bin/kubeconform" -strict -summary -kubernetes-version "${K8S#v}" \
    -schema-location "$tmp/schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "$tmp/rendered.yaml"
done

echo "== compose file against the Compose Specification ($COMPOSE_SPEC)"
# No container engine can pull images here (only the Go, Debian and npm registries are reachable),
# so the file is loaded, interpolated, normalised and checked as 'docker compose config' would.
# Its command at this version does not pass the environment to interpolation, so it checks the
# file as written (-no-interpolation) and a copy with every ${VAR...} replaced by a value (which
# exercises the $$ escapes and the merged node services).
tool "$COMPOSE_SPEC" compose-spec
(cd deploy && "$tmp/bin/compose-spec" -no-interpolation docker-compose.yml >/dev/null)
mkdir -p "$tmp/compose"
cp -r deploy/. "$tmp/compose/"
sed -E 's/\$\{[A-Z0-9_]+(:[-?][^}]*)?\}/ci/g' deploy/docker-compose.yml >"$tmp/compose/docker-compose.yml"
sed -i 's/^    profiles: \[mesh\]$//' "$tmp/compose/docker-compose.yml"
(cd "$tmp/compose" && "$tmp/bin/compose-spec" docker-compose.yml >"$tmp/compose.yaml")
# The loader prints YAML indented by four spaces: services at depth 1, their keys at depth 2.
echo "services: $(awk '/^services:/ { s = 1; next } /^[a-z]/ { s = 0 } s && /^    [a-z0-9-]+:$/ { printf "%s ", $1 }' "$tmp/compose.yaml")"
for svc in postgres control n1 n2 n3 prometheus grafana; do
  awk -v s="    $svc:" '/^services:/ { in_s = 1; next } /^[a-z]/ { in_s = 0 } in_s && $0 == s { f = 1; next }
    f && /^    [a-z0-9-]+:$/ { exit } f && /^        healthcheck:/ { h = 1 } END { exit !h }' "$tmp/compose.yaml" ||
    { echo "compose service $svc has no health check"; exit 1; }
done
echo "== first-start enrolment names the node's routing area (.ci/deploy-enrol.sh)"
bash .ci/deploy-enrol.sh "$tmp/x0tta6bl4" "$tmp/bin/helm"
echo "deploy checks passed"
