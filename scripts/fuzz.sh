#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 10s).
# A target fails only when the fuzzer found an input that fails it (it then
# writes it under testdata/fuzz/); Go 1.26's fuzz coordinator can also end a
# timed run with "context deadline exceeded" and no input (golang/go#75804),
# which is reported but not counted.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
failed=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		before=$(ls "$dir/testdata/fuzz/$f" 2>/dev/null | wc -l)
		echo "fuzz $pkg $f ($fuzztime)"
		if out=$(go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" -fuzzminimizetime 50x "$pkg" 2>&1); then
			continue
		fi
		after=$(ls "$dir/testdata/fuzz/$f" 2>/dev/null | wc -l)
		if [ "$after" -gt "$before" ]; then
			echo "$out" | tail -20
			echo "FAIL: $f found a failing input (under $dir/testdata/fuzz/$f)"
			failed=1
		else
			echo "note: $f ended without a failing input (fuzz engine): $(echo "$out" | tail -3 | tr '\n' ' ')"
		fi
	done
done
exit $failed
