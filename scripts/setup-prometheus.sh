#!/usr/bin/env bash
# Install Prometheus and promtool from Debian's packages for the tests (root, Debian 12 or 13).
#
# The tests start their own prometheus with a temporary config and storage folder, so the
# package's service must never start: a policy-rc.d that refuses every action is in place while
# the package installs, and on a systemd host the unit is disabled afterwards.
set -euo pipefail

report() {
	echo "setup-prometheus: $(prometheus --version 2>&1 | head -n 1)"
	echo "setup-prometheus: $(promtool --version 2>&1 | head -n 1)"
}

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
	report
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "setup-prometheus: run as root to install Debian's prometheus package" >&2
	exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# placed by ckptd scripts/setup-prometheus.sh while it installs\nexit 101\n' \
		>"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends prometheus; }
if ! install; then
	apt-get update -qq
	install
fi

if [ -d /run/systemd/system ]; then
	systemctl disable --now prometheus.service || true
fi

report
