#!/usr/bin/env bash
# Builds dev/crondiff (robfig/cron v3.0.1's next activation times, for tests/unit/schedules/test_cron_differential.py)
# once from the Go module proxy, with the same Go caches as dev/build-kube-score.sh. go.sum pins the module's
# hash. A second run with unchanged sources builds nothing. Prints the path of the binary last.
set -euo pipefail

here=$(cd "$(dirname "$0")/crondiff" && pwd)
cache=${RDS_EXPORT_OPERATOR_CACHE:-$HOME/.cache/rds-export-operator}
# The sources' hash is in the name: an edit (or a version bump in go.mod) builds afresh.
digest=$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
bin=$cache/bin/crondiff-$digest
export GOPATH=$cache/go GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=readonly"

log() { echo "[build-crondiff] $*" >&2; }

if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { log "go is required (Go >= 1.24) to build crondiff"; exit 1; }
  log "building crondiff (robfig/cron $(grep -o 'v3\.[0-9.]*' "$here/go.mod"))"
  mkdir -p "$cache/bin"
  (cd "$here" && go build -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
fi

echo "$bin"
