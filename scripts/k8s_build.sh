#!/usr/bin/env bash
# Builds the real Kubernetes test cluster's programs from upstream Go modules, once, into a cache
# outside the clone: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# etcd (the version k8s.io/kubernetes pins), a minimal CoreDNS and the JobSet controller, plus the
# JobSet CRD read from its module at build time (never copied into this repository).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every staging module at v0.0.0
# and maps them with replace lines, which count only in the main module. So each build has a
# wrapper module of ours whose replace lines pin the staging modules to the matching v0.X.Y tags,
# generated from upstream's own go.mod so that a version bump needs no edit here.
#
# Prints the cache directory (with bin/ and crds/) on its last line. Every failure is one line.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${RLAUNCH_K8S_VERSION:-v1.35.4}
COREDNS_VERSION=v1.14.7   # requires client-go v0.35.4, the same as K8S_VERSION
JOBSET_VERSION=v0.11.1
CACHE_ROOT=${RLAUNCH_K8S_CACHE:-/var/cache/rlaunch-k8s}

die() { echo "k8s_build: $*" >&2; exit 1; }
command -v go >/dev/null || die "no Go toolchain on PATH (install Go >= 1.25; the project's machines have Go 1.26 in /usr/local/go/bin)"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOPROXY=${GOPROXY:-https://proxy.golang.org}
GO_VERSION=$(go env GOVERSION)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}; patch=${K8S_VERSION##*.}
STAGING_VERSION=v0.$minor.$patch
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"

KEY=$(printf '%s\n' "$K8S_VERSION" "$COREDNS_VERSION" "$JOBSET_VERSION" "$GO_VERSION" "$LDFLAGS" \
    | cat - scripts/k8s_coredns_main.go | sha256sum | cut -c1-12)
OUT=$CACHE_ROOT/$K8S_VERSION-$KEY
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd coredns jobset-manager)
binaries_present() { for b in "${BINARIES[@]}"; do [ -x "$OUT/bin/$b" ] || return 1; done; }
complete() { binaries_present && manifests_present; }
manifests_present() { [ -s "$OUT/crds/jobset.yaml" ] && [ -s "$OUT/crds/jobset-webhook/kustomization.yaml" ]; }

# Until the first module is known to be served, nothing is written to the cache.
log=$OUT/build.log
[ -d "$OUT/bin" ] || log=$(mktemp /tmp/k8s_build.XXXXXX.log)
step() { echo "k8s_build: $*" >&2; }
run() { "$@" >>"$log" 2>&1 || die "'$*' failed; the last lines of $log:
$(tail -n 15 "$log")"; }

module_file() {  # module@version -> the path of its go.mod in the module cache (one line on failure)
    local json; json=$(go mod download -json "$1" 2>>"$log") || true
    python3 -c 'import json,sys
d=json.loads(sys.argv[1] or "{}")
if d.get("Error") or not d.get(sys.argv[2]): sys.exit("the Go module proxy does not serve " + sys.argv[3] + ": " + (d.get("Error") or "no answer").splitlines()[0])
print(d[sys.argv[2]])' "$json" "${2:-GoMod}" "$1" || exit 1
}

# JobSet's CRD and webhook configuration (its kustomize component: manifests and patches), read
# from the module zip at build time, never copied into this repository.
copy_jobset_manifests() {
    local dir
    dir=$(module_file "sigs.k8s.io/jobset@$JOBSET_VERSION" Dir 2>&1) || die "$dir"
    cp "$dir/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml" "$OUT/crds/jobset.yaml"
    rm -rf "$OUT/crds/jobset-webhook"
    cp -r "$dir/config/components/webhook" "$OUT/crds/jobset-webhook"
    chmod -R u+w "$OUT/crds"
}

if binaries_present && "$OUT/bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION"; then
    manifests_present || copy_jobset_manifests
    echo "$OUT"; exit 0
fi

# 1. The core wrapper: k8s.io/kubernetes with every staging module pinned, and etcd at k/k's pin.
step "reading k8s.io/kubernetes@$K8S_VERSION's go.mod"
kk_mod=$(module_file "k8s.io/kubernetes@$K8S_VERSION" 2>&1) || { rm -f "$log"; die "$kk_mod"; }
mkdir -p "$OUT/bin" "$OUT/crds" "$OUT/src"
[ "$log" = "$OUT/build.log" ] || { mv "$log" "$OUT/build.log"; log=$OUT/build.log; }
go_line=$(grep -m1 '^go ' "$kk_mod")
godebug_line=$(grep -m1 '^godebug ' "$kk_mod" || true)
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$kk_mod")
[ -n "$etcd_version" ] || die "k8s.io/kubernetes@$K8S_VERSION's go.mod names no go.etcd.io/etcd/server/v3"
staging=$(awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$kk_mod" | sort -u)
[ -n "$staging" ] || die "no v0.0.0 staging requirements in k8s.io/kubernetes@$K8S_VERSION's go.mod"
core=$OUT/src/core; mkdir -p "$core"
{
    echo "module rlaunch.invalid/k8sbin"
    echo "$go_line"
    [ -z "$godebug_line" ] || echo "$godebug_line"
    echo "require ("
    echo "    k8s.io/kubernetes $K8S_VERSION"
    echo "    go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo "replace ("
    for m in $staging; do echo "    $m => $m $STAGING_VERSION"; done
    echo ")"
} > "$core/go.mod"
printf 'package tools\n' > "$core/tools.go"
step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and etcd $etcd_version (cold: about half an hour on 2 cores)"
(cd "$core" && run go build -trimpath -ldflags "$LDFLAGS" -o "$OUT/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
(cd "$core" && run go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3)

# 2. CoreDNS: our minimal main (only the plugins cluster DNS needs; no forwarder to any outside resolver).
step "building CoreDNS $COREDNS_VERSION (minimal main)"
dns=$OUT/src/coredns; mkdir -p "$dns"
dns_mod=$(module_file "github.com/coredns/coredns@$COREDNS_VERSION" 2>&1) || die "$dns_mod"
cp scripts/k8s_coredns_main.go "$dns/main.go"
printf 'module rlaunch.invalid/coredns\n%s\nrequire github.com/coredns/coredns %s\n' "$go_line" "$COREDNS_VERSION" > "$dns/go.mod"
(cd "$dns" && run go build -trimpath -ldflags "-s -w" -o "$OUT/bin/coredns" .)

# 3. JobSet: the manager at the module root, and its CRD from the module zip.
step "building the JobSet controller $JOBSET_VERSION"
jobset_dir=$(module_file "sigs.k8s.io/jobset@$JOBSET_VERSION" Dir 2>&1) || die "$jobset_dir"
js=$OUT/src/jobset; mkdir -p "$js"
printf 'module rlaunch.invalid/jobset\n%s\nrequire sigs.k8s.io/jobset %s\n' "$(grep -m1 '^go ' "$jobset_dir/go.mod")" "$JOBSET_VERSION" > "$js/go.mod"
printf 'package tools\n' > "$js/tools.go"
(cd "$js" && run go build -trimpath -ldflags "-s -w" -o "$OUT/bin/jobset-manager" sigs.k8s.io/jobset)
copy_jobset_manifests

complete || die "the build ended without every program in $OUT/bin"
step "built into $OUT ($(du -sh "$OUT/bin" | cut -f1) of programs)"
echo "$OUT"
