# shellcheck shell=bash
# Build commands of k8s.io/kubernetes from the Go module proxy (sourced by build-controlplane.sh and
# build-node.sh). The module's go.mod requires every staging module at v0.0.0 and replaces it with a
# ./staging path; each is mapped to its published tag (k8s v1.X.Y -> staging v0.X.Y), derived, never
# hard-coded. Version variables are linked in as the Kubernetes Makefile does.
#
#   k8s_module_build <k8s version> <work dir> <output dir> <package>...
k8s_module_build() {
  local version="$1" dir="$2" out="$3"
  shift 3
  local pkgs=("$@") gomod minor
  mkdir -p "${dir}" && cd "${dir}"
  go mod init zenflow.local/k8s-build >/dev/null 2>&1
  log "kubernetes ${version}: reading its go.mod from the module proxy"
  gomod="$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [ -f "${gomod}" ] || { log "could not download k8s.io/kubernetes@${version}"; exit 1; }
  local staging="v0.${version#v1.}"
  local replaces=()
  while read -r mod; do
    replaces+=("-replace=${mod}=${mod}@${staging}")
  done < <(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*$|\1|p' "${gomod}")
  log "kubernetes: ${#replaces[@]} staging replaces"
  go mod edit "${replaces[@]}"
  local godebug
  godebug="$(sed -n 's/^godebug[[:space:]]\{1,\}\(default=.*\)$/\1/p' "${gomod}" | head -n1)"
  [ -n "${godebug}" ] && go mod edit -godebug="${godebug}"
  log "kubernetes: resolving dependencies"
  go get "${pkgs[@]/%/@${version}}" >&2
  minor="${version#v1.}"; minor="${minor%%.*}"
  local ld="-s -w" date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${version} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitCommit=zenflow-module-build -X ${p}.gitTreeState=clean -X ${p}.buildDate=${date}"
  done
  log "kubernetes: compiling ${pkgs[*]##*/}"
  go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "${ld}" -o "${out}/" "${pkgs[@]}" >&2
}
