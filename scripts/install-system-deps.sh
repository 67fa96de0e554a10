#!/usr/bin/env bash
# Install the Debian packages the project needs, only if missing (idempotent, non-interactive).
#   redis-server, redis-tools  the dev/test Redis (touchpoint_tools.devstack runs redis-server itself)
#   kcat                       poking at topics by hand
#   openjdk-17-jre-headless    only if there is no java at all (the broker needs 17+)
#   maven                      only if there is no mvn (fetches the Kafka jars from Maven Central)
#   prometheus                 promtool (rule tests, metrics lint) and the Prometheus server the observability tests start
#   prometheus-alertmanager    amtool (Alertmanager config check and routing tests)
#   chromium                   headless browser rendering the on-call page in its test
# `apt-get update` runs only when something is actually missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-system-deps: need root (or sudo) to install packages" >&2
    exit 1
  fi
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in redis-server redis-tools kcat prometheus prometheus-alertmanager chromium; do
  is_installed "$pkg" || missing+=("$pkg")
done
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-system-deps: nothing to do"
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: keeps e.g. maven from dragging in a full JDK on top of the JRE.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian's redis-server package may start a system-wide instance on 6379 (where an init
# system exists). We never use it; the stack runs its own redis-server on its own port.
# Likewise Debian's prometheus / prometheus-alertmanager services: tests run their own on free ports.
echo "install-system-deps: done"
