#!/usr/bin/env bash
# Prometheus and promtool for the tests, from Debian's `prometheus` package, unpacked into the tool cache
# (never installed system-wide: `apt-get download` + `dpkg -x`, no maintainer scripts, no service).
# Building them from the Prometheus Go module takes ~45 minutes on 2 cores; the package takes seconds.
# Prints the directory holding `prometheus` and `promtool` on its last line; a second run does nothing.
#
#   tools/fetch-prometheus.sh
#
# ZENFLOW_PROMETHEUS_BIN: use that directory instead (nothing is fetched).
set -euo pipefail

if [ -n "${ZENFLOW_PROMETHEUS_BIN:-}" ]; then
  echo "${ZENFLOW_PROMETHEUS_BIN}"
  exit 0
fi

CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
log() { printf '[fetch-prometheus] %s\n' "$*" >&2; }

# shellcheck source=lib/debs.sh
source "$(dirname "$0")/lib/debs.sh"
version="$(debs_candidate prometheus)" || { log "or set ZENFLOW_PROMETHEUS_BIN"; exit 1; }
BIN="${CACHE_ROOT}/tools/prometheus-${version//[^A-Za-z0-9.+-]/_}/bin"
if [ -x "${BIN}/prometheus" ] && [ -x "${BIN}/promtool" ]; then
  log "cached: ${BIN}"
  echo "${BIN}"
  exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT
debs_unpack "${scratch}/root" "prometheus=${version}"
mkdir -p "${BIN}"
install -m 0755 "${scratch}/root/usr/bin/prometheus" "${scratch}/root/usr/bin/promtool" "${BIN}/"
"${BIN}/promtool" --version >&2
echo "${BIN}"
