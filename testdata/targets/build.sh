#!/usr/bin/env bash
# Build a Wasmtime embedder test target.
#
#   build.sh VERSION [OUTDIR] [stripped]
#
# VERSION is one of the module directories next to this script (v39, v37, v3).
# Writes OUTDIR/target-VERSION (default OUTDIR, also if given as "":
# testdata/targets/bin; a relative OUTDIR is relative to the cwd), with
# symbols. With the third argument "stripped", additionally writes
# OUTDIR/target-VERSION-stripped built with -ldflags="-s -w" (no .symtab),
# for refusal tests. Works from any cwd; quiet on success; re-running is
# cheap (Go's build cache) and only replaces outputs whose bytes changed.
set -euo pipefail

usage() {
	echo "usage: $0 VERSION [OUTDIR] [stripped]" >&2
	exit 2
}

[ $# -ge 1 ] && [ $# -le 3 ] || usage
version=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=${2:-$here/bin}
stripped=${3:-}
case "$stripped" in "" | stripped) ;; *) usage ;; esac

src=$here/$version
if [[ ! $version =~ ^[A-Za-z0-9._-]+$ ]] || [ ! -f "$src/go.mod" ] || [ ! -f "$src/main.go" ]; then
	echo "build.sh: no such target version: $version" >&2
	exit 2
fi

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

export CGO_ENABLED=1
export GOWORK=off # these are standalone modules, never part of a workspace

. "$here/../gobuild.sh"

gobuild "$src" "$outdir/target-$version"
if [ "$stripped" = stripped ]; then
	gobuild "$src" "$outdir/target-$version-stripped" -ldflags="-s -w"
fi
