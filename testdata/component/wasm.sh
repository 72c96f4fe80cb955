#!/usr/bin/env bash
# Build the components the component test target runs, into
# testdata/component/cache/ (ignored by git):
#
#   cache/wasmtrace_component.wasm   wat/wasmtrace_component.wat, by jco parse
#   cache/js_burner.wasm             js/app.js + js/world.wit, by componentize-js
#                                    (a ~12 MB StarlingMonkey component)
#
# The tools are the npm packages pinned in tools/package.json, installed
# into tools/node_modules (ignored by git) with npm ci on first use.
# Idempotent: an output is rebuilt only when the hash of its inputs (and of
# the tool versions) changed, recorded next to it as OUTPUT.inputs.
# Works from any cwd; quiet on success. The first run takes about 40 s
# (npm ci, then componentize-js); a no-op run well under a second.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$here/cache
tools=$here/tools
mkdir -p "$cache"

if [ ! -x "$tools/node_modules/.bin/jco" ] || [ ! -x "$tools/node_modules/.bin/componentize-js" ] ||
	! cmp -s "$tools/package-lock.json" "$tools/node_modules/.installed-lock.json"; then
	command -v npm >/dev/null || { echo "wasm.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
	npm ci --prefix "$tools" --no-audit --no-fund --silent >&2
	cp "$tools/package-lock.json" "$tools/node_modules/.installed-lock.json"
fi

# fresh OUT INPUTS...: true if OUT exists and was built from these inputs.
fresh() {
	local out=$1
	shift
	sum=$(cat "$tools/package-lock.json" "$@" | sha256sum | cut -d' ' -f1)
	[ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$sum" ]
}
# publish OUT TMP: move the finished TMP into place and record its inputs.
publish() {
	mv -f "$2" "$1"
	echo "$sum" > "$1.inputs"
}

out=$cache/wasmtrace_component.wasm
if ! fresh "$out" "$here/wat/wasmtrace_component.wat"; then
	"$tools/node_modules/.bin/jco" parse "$here/wat/wasmtrace_component.wat" -o "$out.tmp" >/dev/null
	publish "$out" "$out.tmp"
fi

out=$cache/js_burner.wasm
if ! fresh "$out" "$here/js/app.js" "$here/js/world.wit"; then
	(cd "$here/js" && "$tools/node_modules/.bin/componentize-js" app.js --wit world.wit -n burner \
		-d http -d fetch-event -o "$out.tmp" >/dev/null)
	publish "$out" "$out.tmp"
fi
