#!/bin/sh
# Builds the test collector into testdata/otelcol/bin/otelcol once: it takes
# minutes on two cores, so an existing binary newer than the sources is kept.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
bin="$dir/bin/otelcol"
if [ -x "$bin" ] && [ -z "$(find "$dir/main.go" "$dir/go.mod" "$dir/go.sum" -newer "$bin")" ]; then
	exit 0
fi
cd "$dir"
echo "building the OpenTelemetry Collector for the agent tests (takes a few minutes)" >&2
go build -o "$bin" .
