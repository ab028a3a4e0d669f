#!/usr/bin/env bash
# Check that every runtime dependency of zen-flow has a binary wheel for each target platform of a
# multi-arch image (the image has no compilers: a dependency without a wheel would need one).
#   tools/check-platform-wheels.sh linux/amd64,linux/arm64
# Reads the dependencies from pyproject.toml; needs the Python package index (pip download).
set -euo pipefail
cd "$(dirname "$0")/.."
platforms="${1:-linux/amd64,linux/arm64}"
python="${PYTHON:-.venv/bin/python}"
mapfile -t deps < <("$python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
IFS=',' read -ra targets <<< "$platforms"
for target in "${targets[@]}"; do
  case "$target" in
    linux/amd64) tag=manylinux2014_x86_64 ;;
    linux/arm64) tag=manylinux2014_aarch64 ;;
    *) echo "unknown platform $target (known: linux/amd64, linux/arm64)" >&2; exit 2 ;;
  esac
  if "$python" -m pip download --quiet --only-binary=:all: --platform "$tag" --python-version 3.11 \
      --implementation cp --dest "$work/$tag" "${deps[@]}"; then
    echo "$target: binary wheels for all $(ls "$work/$tag" | wc -l) packages"
  else
    echo "$target: some dependency has no binary wheel (see above)" >&2
    status=1
  fi
done
exit "$status"
