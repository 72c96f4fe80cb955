#!/usr/bin/env bash
# Download the real guest the guest test host runs into
# testdata/guest/cache/ (ignored by git):
#
#   cache/ruby.debug+stdlib.wasm   CRuby 3.4 for WASI with the standard
#                                  library, a name section and DWARF
#                                  (dist/ruby.debug+stdlib.wasm of the npm
#                                  package @ruby/3.4-wasm-wasi)
#
# The package is pinned in tools/package.json and tools/package-lock.json
# and installed into tools/node_modules (ignored by git) with npm ci
# (--ignore-scripts: only its files are used). Idempotent: npm runs only
# when the lock changed since the last install, and the module is copied
# only when its bytes differ. Works from any cwd; quiet on success. The
# first run downloads about 30 MB (a few seconds); a no-op run takes well
# under a second.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$here/cache
tools=$here/tools
pkg=$tools/node_modules/@ruby/3.4-wasm-wasi
mkdir -p "$cache"

if [ ! -f "$pkg/dist/ruby.debug+stdlib.wasm" ] ||
	! cmp -s "$tools/package-lock.json" "$tools/node_modules/.installed-lock.json"; then
	command -v npm >/dev/null || { echo "fetch.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
	npm ci --prefix "$tools" --ignore-scripts --no-audit --no-fund --silent >&2
	cp "$tools/package-lock.json" "$tools/node_modules/.installed-lock.json"
fi

for f in ruby.debug+stdlib.wasm; do
	if ! cmp -s "$pkg/dist/$f" "$cache/$f"; then
		cp "$pkg/dist/$f" "$cache/$f.tmp"
		mv -f "$cache/$f.tmp" "$cache/$f"
	fi
done
