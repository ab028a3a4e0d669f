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

build_kubernetes() {
  local dir="${WORK}/kubernetes" minor gomod
  [ -x "${BIN}/kube-apiserver" ] && [ -x "${BIN}/kube-controller-manager" ] && [ -x "${BIN}/kube-scheduler" ] \
    && [ -x "${BIN}/kubectl" ] && return 0
  mkdir -p "${dir}" && cd "${dir}"
  go mod init zenflow.local/controlplane-build >/dev/null 2>&1
  log "kubernetes ${K8S_VERSION}: reading its go.mod from the module proxy"
  gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "${gomod}" ] || { log "could not download k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
  # Every staging module is required at v0.0.0 and replaced by a ./staging path upstream; map each to its
  # published tag (k8s v1.X.Y -> staging v0.X.Y). Derived, never hard-coded.
  local staging="v0.${K8S_VERSION#v1.}"
  local replaces=()
  while read -r mod; do
    replaces+=("-replace=${mod}=${mod}@${staging}")
  done < <(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*$|\1|p' "${gomod}")
  log "kubernetes: ${#replaces[@]} staging replaces"
  go mod edit "${replaces[@]}"
  local godebug
  godebug="$(sed -n 's/^godebug[[:space:]]\{1,\}\(default=.*\)$/\1/p' "${gomod}" | head -n1)"
  [ -n "${godebug}" ] && go mod edit -godebug="${godebug}"
  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  log "kubernetes: resolving dependencies"
  go get "${pkgs[@]/%/@${K8S_VERSION}}" >&2
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w" date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${K8S_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitCommit=zenflow-module-build -X ${p}.gitTreeState=clean -X ${p}.buildDate=${date}"
  done
  log "kubernetes: compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubectl"
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "${ld}" -o "${BIN}/" "${pkgs[@]}" >&2
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
