#!/usr/bin/env bash
# Build the `wasmtrace trace` test program.
#
#   build.sh [OUT]
#
# Writes OUT (default testdata/events/bin/events; a relative OUT is relative
# to the cwd). Works from any cwd; quiet on success.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/bin/events}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
export CGO_ENABLED=1
export GOWORK=off # a standalone module, never part of a workspace
cd "$here" && go build -trimpath -o "$out" .
