#!/usr/bin/env bash
# Build the controller image from the Containerfile with podman, offline (`make image`):
#   1. wheels: the project's and every runtime dependency's, into dist/wheels (pip; its cache and PyPI);
#   2. the base image, unless BASE_IMAGE names one podman already has: a Debian bookworm root filesystem
#      with python3 (mmdebstrap, cached), imported as localhost/zen-flow-base:bookworm, because
#      python:3.11-slim cannot be pulled where no registry is reachable;
#   3. podman build --network=none, then (with --save FILE) a docker-archive of the image.
# podman keeps its storage under the zen-flow cache, not in /var/lib/containers.
#
#   tools/build-image.sh [--save FILE] [--if-supported]
# Env: IMAGE (default ghcr.io/kube-zen/zen-flow:<version>), BASE_IMAGE.
# --if-supported: without root, podman or mmdebstrap, say why and print nothing instead of failing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "${ROOT}/src/zen_flow/__init__.py")"
IMAGE="${IMAGE:-ghcr.io/kube-zen/zen-flow:${VERSION}}"
CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
CACHE="${CACHE_ROOT}/image"
BASE_IMAGE="${BASE_IMAGE:-localhost/zen-flow-base:bookworm}"
BASE_TAR="${CACHE}/base-bookworm.tar"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"
SAVE=""
IF_SUPPORTED=""
while [ $# -gt 0 ]; do
  case "$1" in
    --save) SAVE="$2"; shift 2 ;;
    --if-supported) IF_SUPPORTED=1; shift ;;
    *) echo "usage: $0 [--save FILE] [--if-supported]" >&2; exit 2 ;;
  esac
done
log() { printf '[build-image] %s\n' "$*" >&2; }

missing=""
[ "$(id -u)" -eq 0 ] || missing="root"
for tool in podman mmdebstrap; do command -v "${tool}" >/dev/null || missing="${missing:+${missing}, }${tool}"; done
if [ -n "${missing}" ]; then
  if [ -n "${IF_SUPPORTED}" ]; then log "cannot build the image here (needs ${missing}): skipped"; exit 0; fi
  log "needs ${missing} (tools/build-node.sh installs podman and mmdebstrap)"; exit 1
fi

mkdir -p "${CACHE}/podman-root" /run/zen-flow-podman
PODMAN=(podman --root "${CACHE}/podman-root" --runroot /run/zen-flow-podman --cgroup-manager cgroupfs
        --events-backend file)
start=$(date +%s)

log "wheels: zen-flow ${VERSION} and its runtime dependencies -> dist/wheels"
rm -rf "${ROOT}/dist/wheels" && mkdir -p "${ROOT}/dist/wheels"
"${PYTHON}" -m pip wheel -q --wheel-dir "${ROOT}/dist/wheels" "${ROOT}[artifacts]" >&2
# Beside the pure wheel, one with the admission rules compiled (hatch_build.py): pip in the image takes
# it, being the more specific for the platform (an image for another platform takes the pure one).
# --no-build-isolation: mypyc type-checks against the dependencies as installed here.
if command -v cc >/dev/null; then
  log "zen-flow with its admission rules compiled by mypyc (about 40 s)"
  ZEN_FLOW_COMPILE=1 "${PYTHON}" -m pip wheel -q --no-build-isolation --no-deps \
    --wheel-dir "${ROOT}/dist/wheels" "${ROOT}" >&2
else
  log "no C compiler (cc): the image runs the admission rules as Python (about 30 % slower)"
fi

if ! "${PODMAN[@]}" image exists "${BASE_IMAGE}"; then
  if [ "${BASE_IMAGE}" != "localhost/zen-flow-base:bookworm" ]; then
    log "base image ${BASE_IMAGE} not found in podman's storage (${CACHE}/podman-root)"; exit 1
  fi
  if [ ! -s "${BASE_TAR}" ]; then
    log "base image: Debian bookworm with python3 (mmdebstrap; about 30 s, cached)"
    mmdebstrap --quiet --format=tar --variant=essential --include=python3,python3-venv,ca-certificates \
      bookworm "${BASE_TAR}.tmp" >&2
    mv "${BASE_TAR}.tmp" "${BASE_TAR}"
  fi
  "${PODMAN[@]}" import --quiet "${BASE_TAR}" "${BASE_IMAGE}" >&2
fi

log "podman build ${IMAGE} (FROM ${BASE_IMAGE}, no network)"
# Explicit ulimits: podman's defaults ask for more than this kind of machine grants ("error setting
# rlimit type 7: operation not permitted").
"${PODMAN[@]}" build --quiet --network=none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
  --build-arg "BASE_IMAGE=${BASE_IMAGE}" -t "${IMAGE}" -f "${ROOT}/Containerfile" "${ROOT}" >&2
size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "${IMAGE}")"
log "built ${IMAGE} in $(( $(date +%s) - start ))s, $(( size / 1024 / 1024 )) MiB"
if [ -n "${SAVE}" ]; then
  rm -f "${SAVE}"
  "${PODMAN[@]}" save --quiet --format docker-archive -o "${SAVE}" "${IMAGE}" >&2
  echo "${SAVE}"
else
  echo "${IMAGE}"
fi
