#!/usr/bin/env bash
# Build (or reuse) a Go command-line tool the deployment checks need, from its Go module, cached outside
# the repository keyed by version (like tools/build-controlplane.sh). Prints the binary's path on its
# last line; a second run with the same version does nothing.
#
#   tools/build-gotool.sh helm       # helm lint / helm template of charts/zen-flow (`make helm-lint`)
#   tools/build-gotool.sh promtool   # promtool check/test rules of config/prometheus
#   tools/build-gotool.sh versitygw  # an S3-compatible server (Apache-2.0) for the artifact tests
#   tools/build-gotool.sh kueue      # Kueue's manager (Apache-2.0) for the e2e tests of queued Jobs; its
#                                    # CRDs and webhook manifests are copied beside it from the module
#
# ZENFLOW_HELM / ZENFLOW_PROMTOOL / ZENFLOW_VERSITYGW / ZENFLOW_KUEUE: use that binary instead (nothing is
# built; for Kueue, a binary in DIR/bin with the manifests in DIR/config).
# Versions: ZENFLOW_HELM_VERSION, ZENFLOW_PROMETHEUS_VERSION (Prometheus 3.x Go module tags are v0.3XX.Y),
# ZENFLOW_VERSITYGW_VERSION, ZENFLOW_KUEUE_VERSION.
set -euo pipefail

tool="${1:-}"
case "${tool}" in
  helm)
    version="${ZENFLOW_HELM_VERSION:-v3.19.5}"
    package="helm.sh/helm/v3/cmd/helm"
    # The Kubernetes version `helm template` assumes without a cluster is set at link time (Helm's own
    # Makefile does it); unset, it would be v1.20 and fail the chart's kubeVersion constraint.
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${version}"
    override="${ZENFLOW_HELM:-}"
    ;;
  promtool)
    version="${ZENFLOW_PROMETHEUS_VERSION:-v0.316.0}"
    package="github.com/prometheus/prometheus/cmd/promtool"
    ldflags="-s -w"
    override="${ZENFLOW_PROMTOOL:-}"
    ;;
  versitygw)
    # Versity's S3 gateway: one process, one port, SigV4 with static keys, objects as plain files. MinIO's
    # server is AGPL, SeaweedFS needs 8 ports and a minute to be ready.
    version="${ZENFLOW_VERSITYGW_VERSION:-v1.8.0}"
    package="github.com/versity/versitygw/cmd/versitygw"
    ldflags="-s -w"
    override="${ZENFLOW_VERSITYGW:-}"
    ;;
  kueue)
    version="${ZENFLOW_KUEUE_VERSION:-v0.17.0}"
    module="sigs.k8s.io/kueue"
    package="${module}/cmd/kueue"
    ldflags="-s -w"
    override="${ZENFLOW_KUEUE:-}"
    ;;
  *)
    echo "usage: $0 helm|promtool|versitygw|kueue" >&2
    exit 2
    ;;
esac

CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
BIN="${CACHE_ROOT}/tools/${tool}-${version}/bin"
log() { printf '[build-gotool] %s\n' "$*" >&2; }

if [ -n "${override}" ]; then
  log "using ${override}"
  echo "${override}"
  exit 0
fi
if [ -x "${BIN}/${tool}" ]; then
  log "cached: ${BIN}/${tool}"
  echo "${BIN}/${tool}"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build ${tool} ${version} from its module"; exit 1; }
mkdir -p "${BIN}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
start=$(date +%s)
if [ "${tool}" = helm ]; then
  gomod="$(go mod download -json "helm.sh/helm/v3@${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  k8s_minor="$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*$|\1|p' "${gomod}" | head -n1)"
  [ -n "${k8s_minor}" ] || { log "cannot read k8s.io/client-go's version from ${gomod}"; exit 1; }
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${k8s_minor}"
fi
if [ "${tool}" = kueue ]; then
  # The manager needs its CRDs and the apiserver its webhook configurations: taken from the same module
  # version (never committed), before the binary, so a cached binary always has them beside it.
  moddir="$(go mod download -json "${module}@${version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -d "${moddir}" ] || { log "cannot find ${module}@${version} in the module cache"; exit 1; }
  rm -rf "${BIN%/bin}/config" && mkdir -p "${BIN%/bin}/config/crd" "${BIN%/bin}/config/webhook"
  cp "${moddir}"/config/components/crd/bases/*.yaml "${BIN%/bin}/config/crd/"
  cp "${moddir}/config/components/webhook/manifests.yaml" "${BIN%/bin}/config/webhook/"
  chmod -R u+w "${BIN%/bin}/config"
fi
log "${tool} ${version}: go install ${package} (minutes the first time)"
GOBIN="${BIN}" go install -trimpath -ldflags "${ldflags}" "${package}@${version}" >&2
log "built in $(( $(date +%s) - start ))s"
echo "${BIN}/${tool}"
