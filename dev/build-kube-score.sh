#!/usr/bin/env bash
# Builds kube-score (the chart's static checks, tests/static/test_kube_score.py) once from the Go module proxy and
# caches it next to the control plane's binaries, with the same Go caches as dev/build-control-plane.sh.
# A second run finds the binary and builds nothing. Prints the path of the binary last.
set -euo pipefail

KUBE_SCORE_VERSION=v1.20.0

cache=${RDS_EXPORT_OPERATOR_CACHE:-$HOME/.cache/rds-export-operator}
# The version is in the directory name, so a version bump builds afresh and never reuses an older binary.
bin=$cache/bin/kube-score-$KUBE_SCORE_VERSION
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOBIN=$bin
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath

log() { echo "[build-kube-score] $*" >&2; }

if [ ! -x "$bin/kube-score" ]; then
  command -v go >/dev/null || { log "go is required (Go >= 1.24) to build kube-score"; exit 1; }
  log "building kube-score $KUBE_SCORE_VERSION (first time only)"
  start=$(date +%s)
  mkdir -p "$bin"
  # Outside any module: `go install pkg@version` resolves exactly that version from the module proxy.
  (cd / && go install -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION")
  log "built in $(( $(date +%s) - start ))s"
fi

echo "$bin/kube-score"
