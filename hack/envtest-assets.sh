#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd for the operator's
# envtest and e2e suites from the Go module proxy and prints the directory
# holding them (for KUBEBUILDER_ASSETS).
#
# A throwaway wrapper module requires k8s.io/kubernetes (whose go.mod points
# every k8s.io staging module at ./staging, which a module consumer cannot use)
# and replaces each staging module by its published v0.x release, then builds
# cmd/kube-apiserver, cmd/kube-controller-manager (one go build, so the packages
# they share compile once) and etcd's server main with CGO_ENABLED=0.
#
# The result is cached under $CACHE_DIR/envtest/<k8s-version>-etcd<etcd-version>
# and reused when both binaries are already there. Build output goes to stderr;
# stdout carries only the directory.
#
# Environment:
#   CACHE_DIR         cache root (default ~/.cache/imcluster)
#   K8S_VERSION       k8s.io/kubernetes version (default v1.37.2)
#   ETCD_VERSION      go.etcd.io/etcd/server/v3 version (default: what K8S_VERSION's go.mod requires)
#   ENVTEST_BUILD_P   go build -p (default: the number of cores)
set -euo pipefail

CACHE_DIR="${CACHE_DIR:-$HOME/.cache/imcluster}"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ENVTEST_BUILD_P="${ENVTEST_BUILD_P:-$(nproc)}"
GO="${GO:-go}"
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=mod"

log() { echo "envtest-assets: $*" >&2; }

# The staging modules carry v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

k8s_gomod() {
	"$GO" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

if [[ -z "${ETCD_VERSION:-}" ]]; then
	gomod="$(k8s_gomod)"
	[[ -f "$gomod" ]] || { log "cannot read go.mod of k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
	ETCD_VERSION="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$gomod")"
	[[ -n "$ETCD_VERSION" ]] || { log "k8s.io/kubernetes@${K8S_VERSION} does not name an etcd server version"; exit 1; }
fi

OUT="$CACHE_DIR/envtest/${K8S_VERSION}-etcd${ETCD_VERSION}"
if [[ -x "$OUT/kube-apiserver" && -x "$OUT/kube-controller-manager" && -x "$OUT/etcd" ]]; then
	echo "$OUT"
	exit 0
fi

gomod="${gomod:-$(k8s_gomod)}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/imcluster-envtest-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "building kube-apiserver and kube-controller-manager ${K8S_VERSION} and etcd ${ETCD_VERSION} into $OUT (this takes a while the first time)"

# Every staging module that kubernetes requires at v0.0.0 gets the published release.
mapfile -t staging < <(awk '/=> \.\/staging\/src\// { print $1 }' "$gomod")
[[ ${#staging[@]} -gt 0 ]] || { log "no staging replacements found in $gomod"; exit 1; }

{
	echo "module imcluster.local/envtest-build"
	echo
	echo "go $(awk '$1 == "go" { print $2; exit }' "$gomod")"
	echo
	echo "require ("
	echo "	k8s.io/kubernetes ${K8S_VERSION}"
	echo "	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
	echo ")"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		# Only modules kubernetes actually requires need (and have) a release.
		if awk -v m="$m" '$1 == m && $2 == "v0.0.0" { found = 1 } END { exit !found }' "$gomod"; then
			echo "	$m => $m ${STAGING_VERSION}"
		fi
	done
	echo ")"
} >"$WORK/go.mod"

cat >"$WORK/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
EOF

cd "$WORK"
"$GO" mod tidy -e >&2 || "$GO" mod tidy >&2

mkdir -p "$OUT.tmp"
start=$SECONDS
CGO_ENABLED=0 "$GO" build -p "$ENVTEST_BUILD_P" -trimpath -ldflags "-s -w" \
	-o "$OUT.tmp/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager >&2
log "kube-apiserver and kube-controller-manager built in $((SECONDS - start))s"
start=$SECONDS
CGO_ENABLED=0 "$GO" build -p "$ENVTEST_BUILD_P" -trimpath -ldflags "-s -w" \
	-o "$OUT.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
log "etcd built in $((SECONDS - start))s"

rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
