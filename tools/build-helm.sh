#!/usr/bin/env bash
# Build (or reuse) the helm CLI that `make helm-lint` / `make helm-template` and the chart tests use.
# helm is built from its Go module (helm.sh/helm/v3) and cached outside the repository, keyed by version,
# like tools/build-controlplane.sh does for the control plane. Prints the binary's path on its last line.
#
# ZENFLOW_HELM: use this helm binary instead (nothing is built). A `helm` on PATH is used as well when its
# major version is 3.
set -euo pipefail

HELM_VERSION="${ZENFLOW_HELM_VERSION:-v3.19.5}"
CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
BIN="${CACHE_ROOT}/tools/helm-${HELM_VERSION}/bin"

log() { printf '[build-helm] %s\n' "$*" >&2; }

if [ -n "${ZENFLOW_HELM:-}" ]; then
  log "using \$ZENFLOW_HELM=${ZENFLOW_HELM}"
  echo "${ZENFLOW_HELM}"
  exit 0
fi
if [ -x "${BIN}/helm" ]; then
  log "cached: ${BIN}/helm"
  echo "${BIN}/helm"
  exit 0
fi
if command -v helm >/dev/null && helm version --short 2>/dev/null | grep -q '^v3\.'; then
  log "using $(command -v helm) ($(helm version --short))"
  command -v helm
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build helm ${HELM_VERSION} from its module"; exit 1; }
mkdir -p "${BIN}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
start=$(date +%s)
log "helm ${HELM_VERSION}: go install helm.sh/helm/v3/cmd/helm (a few minutes the first time)"
ld="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
GOBIN="${BIN}" go install -trimpath -ldflags "${ld}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
"${BIN}/helm" version --short >&2
log "built in $(( $(date +%s) - start ))s"
echo "${BIN}/helm"
