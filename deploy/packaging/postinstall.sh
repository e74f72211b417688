#!/bin/sh
# After install or upgrade: the control plane's system user (the node unit uses DynamicUser and
# needs none), then a daemon reload where systemd runs. Nothing is enabled or started.
set -e
# An install into another root (dpkg --root, as deploy/package.sh checks it) changes nothing here.
[ -z "${DPKG_ROOT:-}" ] || exit 0
if ! getent passwd x0tta6bl4 >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/x0tta6bl4-control --no-create-home --shell /usr/sbin/nologin x0tta6bl4 2>/dev/null ||
    adduser --system --home /var/lib/x0tta6bl4-control --no-create-home --group x0tta6bl4 >/dev/null 2>&1 || true
fi
if getent group x0tta6bl4 >/dev/null 2>&1; then chgrp x0tta6bl4 /etc/x0tta6bl4/control.yaml 2>/dev/null || true; fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
