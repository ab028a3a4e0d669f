#!/usr/bin/env bash
# Build (or reuse) what a real node of the local cluster needs, for the real-node test tier:
#   kubelet, kube-proxy   k8s.io/kubernetes (the control plane's version), from the Go module proxy
#   containerd v2         containerd, containerd-shim-runc-v2, ctr (static, from its Go module)
#   registry              the CNCF distribution registry (github.com/distribution/distribution/v3)
#   crane                 pushes image tarballs to it (github.com/google/go-containerregistry)
#   pause                 the pod sandbox's process: tools/node/pause.c, compiled static
# cached outside the repository keyed by versions, and installs the Debian packages a node needs when
# they are missing (runc, the CNI plugins, iptables, busybox-static, mmdebstrap, podman, umoci).
#
# Prints the bin directory on its last line. A second run with the same versions does nothing.
# ZENFLOW_NODE_BIN: use existing binaries instead (nothing is built or installed).
# --if-supported: on a host that cannot run a real node (not root, no cgroup v1 hierarchies), say why on
# stderr and print nothing (the real-node tests then skip with that reason) instead of failing.
set -euo pipefail

K8S_VERSION="${ZENFLOW_K8S_VERSION:-v1.36.3}"
CONTAINERD_VERSION="${ZENFLOW_CONTAINERD_VERSION:-v2.4.2}"
REGISTRY_VERSION="${ZENFLOW_REGISTRY_VERSION:-v3.1.2}"
CRANE_VERSION="${ZENFLOW_CRANE_VERSION:-v0.22.1}"
CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
KEY="k8s-${K8S_VERSION}_containerd-${CONTAINERD_VERSION}_registry-${REGISTRY_VERSION}_crane-${CRANE_VERSION}"
BIN="${CACHE_ROOT}/node/${KEY}/bin"
BINARIES=(kubelet kube-proxy containerd containerd-shim-runc-v2 ctr registry crane pause)
PACKAGES=(runc containernetworking-plugins iptables busybox-static mmdebstrap podman umoci)
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[build-node] %s\n' "$*" >&2; }

if [ "${1:-}" = "--if-supported" ]; then
  if [ "$(id -u)" -ne 0 ]; then log "not root: the real-node tier will be skipped"; exit 0; fi
  if [ ! -e /sys/fs/cgroup/memory/cgroup.procs ]; then
    log "no cgroup v1 memory hierarchy: the real-node tier will be skipped"; exit 0
  fi
fi

if [ -n "${ZENFLOW_NODE_BIN:-}" ]; then
  log "using existing binaries from \$ZENFLOW_NODE_BIN=${ZENFLOW_NODE_BIN}"
  echo "${ZENFLOW_NODE_BIN}"
  exit 0
fi

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" || missing+=("${pkg}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || { log "missing packages ${missing[*]} and no apt-get to install them"; exit 1; }
  [ "$(id -u)" -eq 0 ] || { log "missing packages ${missing[*]}; installing them needs root"; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

have_all() { for b in "${BINARIES[@]}"; do [ -x "${BIN}/$b" ] || return 1; done; }

install_packages
if have_all; then
  log "cached: ${BIN}"
  echo "${BIN}"
  exit 0
fi

command -v go >/dev/null || { log "Go >= 1.26 is required to build the node (see docs/TESTING.md)"; exit 1; }
mkdir -p "${BIN}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
WORK="$(mktemp -d "${CACHE_ROOT}/build.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT
start=$(date +%s)

# shellcheck source=lib/k8s-module.sh
source "${HERE}/lib/k8s-module.sh"

build_kubernetes() {
  [ -x "${BIN}/kubelet" ] && [ -x "${BIN}/kube-proxy" ] && return 0
  k8s_module_build "${K8S_VERSION}" "${WORK}/kubernetes" "${BIN}" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

build_containerd() {
  [ -x "${BIN}/containerd" ] && [ -x "${BIN}/containerd-shim-runc-v2" ] && [ -x "${BIN}/ctr" ] && return 0
  local dir="${WORK}/containerd" mod="github.com/containerd/containerd/v2"
  mkdir -p "${dir}" && cd "${dir}"
  go mod init zenflow.local/containerd-build >/dev/null 2>&1
  log "containerd ${CONTAINERD_VERSION}"
  go get "${mod}/cmd/containerd@${CONTAINERD_VERSION}" >&2
  local ld="-s -w -X ${mod}/version.Version=${CONTAINERD_VERSION} -X ${mod}/version.Revision=zenflow-module-build"
  go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" -ldflags "${ld}" -o "${BIN}/" \
    "${mod}/cmd/containerd" "${mod}/cmd/containerd-shim-runc-v2" "${mod}/cmd/ctr" >&2
}

build_registry() {
  [ -x "${BIN}/registry" ] && return 0
  log "distribution registry ${REGISTRY_VERSION}"
  GOBIN="${BIN}" go install -trimpath -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@${REGISTRY_VERSION}" >&2
}

build_crane() {
  [ -x "${BIN}/crane" ] && return 0
  log "crane ${CRANE_VERSION}"
  GOBIN="${BIN}" go install -trimpath -ldflags "-s -w" \
    "github.com/google/go-containerregistry/cmd/crane@${CRANE_VERSION}" >&2
}

build_pause() {
  [ -x "${BIN}/pause" ] && return 0
  log "pause (tools/node/pause.c)"
  gcc -Os -static -o "${BIN}/pause" "${HERE}/node/pause.c" >&2
}

build_pause
build_registry
build_crane
build_containerd
build_kubernetes

log "built in $(( $(date +%s) - start ))s; size $(du -sh "${BIN}" | cut -f1)"
have_all || { log "missing binaries in ${BIN}"; exit 1; }
echo "${BIN}"
