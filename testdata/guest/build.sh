#!/usr/bin/env bash
# Build the guest test host (a Wasmtime embedder running CRuby for WASI).
#
#   build.sh VERSION [OUTDIR]
#
# VERSION is one of the module directories next to this script (v39, v37, v3).
# Writes OUTDIR/guest-VERSION (default OUTDIR, also if given as "":
# testdata/guest/bin; a relative OUTDIR is relative to the cwd). The Ruby
# module it runs is downloaded by fetch.sh. Works from any cwd; quiet on
# success; re-running is cheap (Go's build cache) and only replaces the
# output when its bytes changed.
set -euo pipefail

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 VERSION [OUTDIR]" >&2; exit 2; }
version=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=${2:-$here/bin}
src=$here/$version
if [[ ! $version =~ ^v[0-9]+$ ]] || [ ! -f "$src/go.mod" ] || [ ! -f "$src/main.go" ]; then
	echo "build.sh: no such guest host version: $version" >&2
	exit 2
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

export CGO_ENABLED=1
export GOWORK=off # standalone modules, never part of a workspace

. "$here/../gobuild.sh"
gobuild "$src" "$outdir/guest-$version"
