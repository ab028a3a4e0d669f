#!/usr/bin/env bash
# Build (or reuse) the local Kubernetes control-plane binaries zen-flow's tests run against:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes), etcd and kwok,
# all from their Go modules, cached outside the repository keyed by version.
#
# Prints the bin directory on its last line. A second run with the same versions does nothing.
# ZENFLOW_CONTROLPLANE_BIN / KUBEBUILDER_ASSETS: use existing binaries instead (nothing is built).
set -euo pipefail

K8S_VERSION="${ZENFLOW_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ZENFLOW_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${ZENFLOW_KWOK_VERSION:-v0.8.0}"
CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BIN="${CACHE_ROOT}/controlplane/${KEY}/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

log() { printf '[build-controlplane] %s\n' "$*" >&2; }

for var in ZENFLOW_CONTROLPLANE_BIN KUBEBUILDER_ASSETS; do
  if [ -n "${!var:-}" ]; then
    log "using existing binaries from \$${var}=${!var}"
    echo "${!var}"
    exit 0
  fi
done

have_all() { for b in "${BINARIES[@]}"; do [ -x "${BIN}/$b" ] || return 1; done; }
if have_all; then
  log "cached: ${BIN}"
  echo "${BIN}"
  exit 0
fi

command -v go >/dev/null || { log "Go >= 1.26 is required to build the control plane (see docs/TESTING.md)"; exit 1; }
mkdir -p "${BIN}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
WORK="$(mktemp -d "${CACHE_ROOT}/build.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT
start=$(date +%s)

# shellcheck source=lib/k8s-module.sh
source "$(dirname "$0")/lib/k8s-module.sh"

build_kubernetes() {
  [ -x "${BIN}/kube-apiserver" ] && [ -x "${BIN}/kube-controller-manager" ] && [ -x "${BIN}/kube-scheduler" ] \
    && [ -x "${BIN}/kubectl" ] && return 0
  k8s_module_build "${K8S_VERSION}" "${WORK}/kubernetes" "${BIN}" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  [ -x "${BIN}/etcd" ] && return 0
  local dir="${WORK}/etcd"
  mkdir -p "${dir}" && cd "${dir}"
  go mod init zenflow.local/etcd-build >/dev/null 2>&1
  log "etcd ${ETCD_VERSION}"
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  go build -trimpath -ldflags "-s -w" -o "${BIN}/etcd" go.etcd.io/etcd/server/v3 >&2
}

build_kwok() {
  [ -x "${BIN}/kwok" ] && return 0
  log "kwok ${KWOK_VERSION}"
  GOBIN="${BIN}" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" >&2
}

build_etcd
build_kwok
build_kubernetes

"${BIN}/kube-apiserver" --version >&2
"${BIN}/etcd" --version | head -n1 >&2
"${BIN}/kwok" --version >&2 || true
log "built in $(( $(date +%s) - start ))s; size $(du -sh "${BIN}" | cut -f1)"
have_all || { log "missing binaries in ${BIN}"; exit 1; }
echo "${BIN}"
