# Sourced by the build.sh of each test program here.
#
# gobuild SRC OUT [go build flags...]: build the Go module in SRC to OUT.
# It builds to a temp file that starts as a copy of OUT (so that go build's
# own up-to-date check can skip the slow cgo link), then replaces OUT only
# when the bytes changed: re-running is cheap and keeps OUT's mtime, and a
# running OUT is never written to.
gobuild() {
	local src=$1 out=$2
	shift 2
	local tmp
	tmp=$(mktemp "$out.tmp.XXXXXX")
	[ -f "$out" ] && cp -p "$out" "$tmp"
	if ! (cd "$src" && CGO_ENABLED=1 GOWORK=off go build -trimpath "$@" -o "$tmp" .); then
		rm -f "$tmp"
		return 1
	fi
	if [ -f "$out" ] && cmp -s "$tmp" "$out"; then
		rm -f "$tmp"
	else
		chmod 0755 "$tmp"
		mv -f "$tmp" "$out"
	fi
}
