#!/usr/bin/env bash
# `make test`'s runner: the real-node tier (tests/node) in a pytest process of its own, beside the other
# tiers in another. The node tier spends most of its time waiting on containers, the kubelet and rollouts,
# the others on their own control planes: run one after the other they took ~15 minutes here, side by side
# ~10 (docs/TESTING.md). The other tiers stream to the terminal; the node tier's output follows, whole,
# once both are done. Exits non-zero if either failed.
#
#   tools/test-tiers.sh PYTEST [PYTEST ARGS...]
set -uo pipefail

pytest="$1"
shift
log="$(mktemp -t zen-flow-node-tier.XXXXXX)"
"${pytest}" tests/node "$@" >"${log}" 2>&1 &
node=$!
# A CI timeout or Ctrl-C stops both (each unwinds its clusters: tests/conftest.py).
trap 'kill -TERM "${node}" 2>/dev/null; wait "${node}"; rm -f "${log}"; exit 130' INT TERM

echo "[make test] tests/node runs beside the other tiers; its output follows theirs (log: ${log})"
"${pytest}" tests --ignore=tests/node "$@"
others=$?
if kill -0 "${node}" 2>/dev/null; then
  echo "[make test] waiting for tests/node ..."
fi
wait "${node}"
node_status=$?
echo "=============================== tests/node ==============================="
cat "${log}"
rm -f "${log}"
echo "[make test] other tiers: exit ${others}; tests/node: exit ${node_status}"
[ "${others}" -eq 0 ] && [ "${node_status}" -eq 0 ]
