#!/usr/bin/env bash
# make bench: builds the reference CLIs (syft, trivy, cosign, crane) at the
# versions lotse links, into a cache outside the repository, then times
# `lotse release` against the four CLIs in a row on a small and a large image.
#
# `go install` is refused for syft and trivy here, so a throwaway wrapper
# module that requires them builds them. Needs the Go module proxy once.
set -euo pipefail
lotse=${1:?usage: bench.sh path/to/lotse path/to/lotsed}
lotsed=${2:?usage: bench.sh path/to/lotse path/to/lotsed}
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${LOTSE_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lotse-bench}"
tools="$cache/bin"
mkdir -p "$tools" "$cache/wrapper"
export GOEXPERIMENT=jsonv2 CGO_ENABLED=0

if [ ! -x "$tools/syft" ] || [ ! -x "$tools/trivy" ] || [ ! -x "$tools/cosign" ] || [ ! -x "$tools/crane" ]; then
  echo "==> building the reference CLIs into $tools (once)"
  cd "$cache/wrapper"
  [ -f go.mod ] || go mod init lotse-bench-tools >/dev/null 2>&1
  go get github.com/anchore/syft/cmd/syft@v1.54.1 \
         github.com/aquasecurity/trivy/cmd/trivy@v0.74.0 \
         github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3 \
         github.com/google/go-containerregistry/cmd/crane@v0.22.1 \
         github.com/fvbommel/sortorder@v1.2.0
  for p in github.com/anchore/syft/cmd/syft github.com/aquasecurity/trivy/cmd/trivy \
           github.com/sigstore/cosign/v3/cmd/cosign github.com/google/go-containerregistry/cmd/crane; do
    go build -ldflags '-s -w' -o "$tools/$(basename "$p")" "$p"
  done
  cd "$root"
fi

cd "$root"
eval "$(scripts/postgres.sh)"
go run ./test/bench -lotse "$lotse" -lotsed "$lotsed" -tools "$tools" "${@:3}"

# The board's read model: GET /api/v1/status for 1,000 apps × 4 stages with
# a landing in every stage, from lotsed's SQLite records (no GitLab calls by
# construction: the read model has no GitLab client). Target: under 100 ms.
go test -pgo=off -run '^$' -bench 'BenchmarkStatus1000Apps' -benchtime 20x ./webhook | grep -E '^Benchmark'
