#!/usr/bin/env bash
# zsh and fish for the shell-completion tests, from Debian's packages, unpacked into the tool cache (never
# installed system-wide; see lib/debs.sh). Prints a directory holding `zsh` and `fish` launchers on its
# last line; a second run does nothing.
#
#   tools/fetch-shells.sh
#
# ZENFLOW_SHELLS_BIN: use that directory instead (nothing is fetched).
set -euo pipefail

if [ -n "${ZENFLOW_SHELLS_BIN:-}" ]; then
  echo "${ZENFLOW_SHELLS_BIN}"
  exit 0
fi

CACHE_ROOT="${ZENFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-flow}"
log() { printf '[fetch-shells] %s\n' "$*" >&2; }

# shellcheck source=lib/debs.sh
source "$(dirname "$0")/lib/debs.sh"
zsh_version="$(debs_candidate zsh)"
fish_version="$(debs_candidate fish)"
DIR="${CACHE_ROOT}/tools/shells-zsh-${zsh_version//[^A-Za-z0-9.+-]/_}-fish-${fish_version//[^A-Za-z0-9.+-]/_}"
BIN="${DIR}/bin"
if [ -x "${BIN}/zsh" ] && [ -x "${BIN}/fish" ]; then
  log "cached: ${BIN}"
  echo "${BIN}"
  exit 0
fi

rm -rf "${DIR}"
debs_unpack "${DIR}/root" "zsh=${zsh_version}" zsh-common "fish=${fish_version}" fish-common libpcre2-32-0
mkdir -p "${BIN}"
root="${DIR}/root"
# Launchers: the libraries and zsh's function path live under root/, not under /usr.
# zsh ignores MODULE_PATH from the environment (a security rule), so the launcher exports it under another
# name for scripts to set module_path=(${(s.:.)ZENFLOW_ZSH_MODULE_PATH}) before loading compinit.
zsh_functions="$(find "${root}/usr/share/zsh" -type d -path '*/functions/*' | sort | paste -sd:)"
zsh_modules="$(dirname "$(dirname "$(find "${root}/usr/lib" -name zle.so | head -1)")")"
cat >"${BIN}/zsh" <<LAUNCHER
#!/bin/sh
FPATH="${zsh_functions}" ZENFLOW_ZSH_MODULE_PATH="${zsh_modules}" exec "${root}/bin/zsh" "\$@"
LAUNCHER
cat >"${BIN}/fish" <<LAUNCHER
#!/bin/sh
LD_LIBRARY_PATH="${root}/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "${root}/usr/bin/fish" "\$@"
LAUNCHER
chmod 0755 "${BIN}/zsh" "${BIN}/fish"
"${BIN}/zsh" --version >&2
"${BIN}/fish" --version >&2
echo "${BIN}"
