#!/bin/sh
# Before removal: stop the units if systemd runs them. State in /var/lib stays.
[ -z "${DPKG_ROOT:-}" ] || exit 0
if [ -d /run/systemd/system ]; then
  systemctl stop x0tta6bl4-node.service x0tta6bl4-control.service >/dev/null 2>&1 || true
fi
exit 0
