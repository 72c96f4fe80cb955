#!/usr/bin/env bash
# Build the async (fiber) Wasmtime embedder test target.
#
#   build.sh VERSION [OUTDIR]
#
# VERSION is one of the module directories next to this script (v39, v37).
# Writes OUTDIR/async-VERSION (default OUTDIR, also if given as "":
# testdata/async/bin; a relative OUTDIR is relative to the cwd). The C half
# (async.c) includes Wasmtime's C API headers from the version's wasmtime-go
# module (build/include), put on the include path through CGO_CFLAGS. Works
# from any cwd; quiet on success; re-running is cheap (Go's build cache) and
# replaces the output only if its bytes changed.
set -euo pipefail

usage() {
	echo "usage: $0 VERSION [OUTDIR]" >&2
	exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
version=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=${2:-$here/bin}

src=$here/$version
if [[ ! $version =~ ^[A-Za-z0-9._-]+$ ]] || [ ! -f "$src/go.mod" ] || [ ! -f "$src/main.go" ]; then
	echo "build.sh: no such async target version: $version" >&2
	exit 2
fi

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

export CGO_ENABLED=1
export GOWORK=off # a standalone module, never part of a workspace

mod=$(grep -Eom1 'github.com/bytecodealliance/wasmtime-go/v[0-9]+' "$src/go.mod") || {
	echo "build.sh: $src/go.mod requires no wasmtime-go" >&2
	exit 1
}
(cd "$src" && go mod download "$mod")
moddir=$(cd "$src" && go list -m -f '{{.Dir}}' "$mod")
if [ ! -f "$moddir/build/include/wasmtime/async.h" ]; then
	echo "build.sh: no $moddir/build/include/wasmtime/async.h" >&2
	exit 1
fi
export CGO_CFLAGS="-O2 -g -I$moddir/build/include"

. "$here/../gobuild.sh"
gobuild "$src" "$outdir/async-$version"
