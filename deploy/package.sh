#!/usr/bin/env bash
# Builds x0tta6bl4 and its Debian and RPM packages with nfpm (deploy/nfpm.yaml), then checks the
# .deb: its file list, and an install with dpkg into a scratch root (no maintainer scripts run
# there; they are checked with sh -n) whose binary must run.
#
#   bash deploy/package.sh                  # packages in ./dist
#   OUT=DIR X6_VERSION=1.2.3 bash deploy/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
OUT=${OUT:-dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export X6_VERSION=${X6_VERSION:-0.0.0~git$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export X6_BIN=$OUT/x0tta6bl4
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$X6_BIN" ./cmd/x0tta6bl4
tools=$(mktemp -d)
(cd "$tools" && GOBIN="$tools" go install "$NFPM")
# nfpm expands the environment in some fields only: the binary's path is put into a copy.
sed "s#\${X6_BIN}#$X6_BIN#" deploy/nfpm.yaml >"$OUT/nfpm.yaml"
for p in deb rpm; do
  "$tools/nfpm" package --config "$OUT/nfpm.yaml" --packager "$p" --target "$OUT/"
done
deb=$(ls "$OUT"/*.deb | head -1)
echo "== $(basename "$deb")"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{ print $1, $NF }'
for s in deploy/packaging/*.sh; do sh -n "$s"; done
root=$(mktemp -d)
trap 'rm -rf "$root" "$tools"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-script-chrootless --force-not-root --no-triggers --log=/dev/null -i "$deb" ||
  dpkg --root="$root" --force-all --no-triggers --log=/dev/null -i "$deb"
dpkg --root="$root" -s x0tta6bl4 | grep -E '^(Status|Version):'
"$root/usr/bin/x0tta6bl4" help >/dev/null
ls -l "$root/usr/bin/x0tta6bl4" "$root/usr/lib/systemd/system/" "$root/etc/x0tta6bl4/"
echo "packages: $(ls "$OUT"/*.deb "$OUT"/*.rpm | xargs -n1 basename | tr '\n' ' ')"
