package profile

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// DisplayName is the one rule by which every format shows a frame's name
// (and a thread's name), so a name reads, and is searched for, the same in
// text, folded, pprof, svg and speedscope output:
//
//   - ';' becomes ':' (';' separates frames in folded stacks, as in
//     FlameGraph's stackcollapse scripts and inferno);
//   - control characters (tab, newline, carriage return, every other C0
//     and C1 code, DEL) and the Unicode line and paragraph separators
//     become ' ', so a name stays on one line;
//   - bytes that are not UTF-8, and the noncharacters U+FFFE and U+FFFF
//     (which XML forbids), become U+FFFD, so JSON, XML and protobuf
//     strings hold exactly what is shown.
//
// Everything else, spaces included, is kept: folded lines end in the last
// space, so a space in a name is unambiguous. Markup escaping (XML in svg,
// JSON in speedscope) is applied on top by each writer and is undone by the
// reader.
func DisplayName(name string) string {
	clean := true
	for _, r := range name {
		if needsEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return name
	}
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		switch {
		case r == ';':
			b.WriteByte(':')
		case r == utf8.RuneError || r == '\uFFFE' || r == '\uFFFF':
			// An invalid byte, or a U+FFFD already in the name, shows as
			// U+FFFD.
			b.WriteRune(utf8.RuneError)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	// utf8.RuneError also flags a literal U+FFFD, which is rewritten to
	// itself: harmless, and it keeps the test cheap.
	return r == ';' || r == utf8.RuneError || r == '\uFFFE' || r == '\uFFFF' ||
		unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}
