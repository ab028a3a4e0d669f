# shellcheck shell=bash
# Debian packages unpacked into a directory, never installed system-wide (`apt-get download` + `dpkg -x`:
# no maintainer scripts, no services), for tools the tests run. Sourced by fetch-prometheus.sh and
# fetch-shells.sh.
#
#   debs_candidate <package>          print apt's candidate version, or fail saying how to get one
#   debs_unpack <dest dir> <package>...   download each candidate and unpack it under <dest dir>
debs_candidate() {
  command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || { log "needs apt-get and dpkg (Debian or Ubuntu)"; return 1; }
  local version
  version="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p')"
  if [ -z "${version}" ] || [ "${version}" = "(none)" ]; then
    log "apt knows no '$1' package: run apt-get update"
    return 1
  fi
  echo "${version}"
}

debs_unpack() {
  local dest="$1" scratch pkg
  shift
  scratch="$(mktemp -d)"
  for pkg in "$@"; do
    log "${pkg}: apt-get download + dpkg -x (not installed)"
    # apt drops privileges to _apt for downloads when it can; in a root-only temp dir it cannot, which
    # only costs a warning.
    (cd "${scratch}" && apt-get download -q "${pkg}" >&2 2>/dev/null) || { rm -rf "${scratch}"; return 1; }
  done
  mkdir -p "${dest}"
  for deb in "${scratch}"/*.deb; do dpkg -x "${deb}" "${dest}"; done
  rm -rf "${scratch}"
}
