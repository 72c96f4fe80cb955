#!/usr/bin/env bash
# Build the component embedder test target.
#
#   build.sh VERSION [OUTDIR]
#
# VERSION is one of the module directories next to this script (v39, v37).
# Writes OUTDIR/component-VERSION (default OUTDIR, also if given as "":
# testdata/component/bin; a relative OUTDIR is relative to the cwd). The
# program calls the Wasmtime C API directly, from the headers in the
# wasmtime-go module (build/include), and links the libwasmtime.a that
# wasmtime-go's cgo flags name. The components it runs are built by wasm.sh.
# Works from any cwd; quiet on success; re-running is cheap (Go's build
# cache) and only replaces the output when its bytes changed.
set -euo pipefail

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 VERSION [OUTDIR]" >&2; exit 2; }
version=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
outdir=${2:-$here/bin}
src=$here/$version
if [[ ! $version =~ ^v[0-9]+$ ]] || [ ! -f "$src/go.mod" ]; then
	echo "build.sh: no such component target version: $version" >&2
	exit 2
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

export CGO_ENABLED=1
export GOWORK=off # standalone modules, never part of a workspace
wtgo=github.com/bytecodealliance/wasmtime-go/$version
dir=$(cd "$src" && go mod download "$wtgo" && go list -m -f '{{.Dir}}' "$wtgo")
export CGO_CFLAGS="-I$dir/build/include ${CGO_CFLAGS:-}"

. "$here/../gobuild.sh"
gobuild "$src" "$outdir/component-$version"
