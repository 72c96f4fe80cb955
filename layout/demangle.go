package layout

import (
	"strconv"
	"strings"
)

// demangle turns a Rust "legacy" mangled symbol (_ZN...E) into its path,
// without the trailing hash: _ZN8wasmtime7runtime3TLS3VAL17h0123456789abcdefE
// becomes "wasmtime::runtime::TLS::VAL". Anything else is returned as is.
// It understands only what symbol matching needs; it is not a general
// demangler.
func demangle(sym string) string {
	s, ok := strings.CutPrefix(sym, "_ZN")
	if !ok {
		return sym
	}
	var parts []string
	for len(s) > 0 && s[0] != 'E' {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 0 {
			return sym
		}
		l, err := strconv.Atoi(s[:n])
		if err != nil || l <= 0 || n+l > len(s) {
			return sym
		}
		parts = append(parts, unescapeIdent(s[n:n+l]))
		s = s[n+l:]
	}
	if len(s) == 0 {
		return sym
	}
	if k := len(parts) - 1; k > 0 && isHash(parts[k]) {
		parts = parts[:k]
	}
	return strings.Join(parts, "::")
}

func isHash(p string) bool {
	if len(p) != 17 || p[0] != 'h' {
		return false
	}
	for _, c := range p[1:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

var identEscapes = strings.NewReplacer(
	"$SP$", "@", "$BP$", "*", "$RF$", "&", "$LT$", "<", "$GT$", ">",
	"$LP$", "(", "$RP$", ")", "$C$", ",", "$u7b$", "{", "$u7d$", "}",
	"$u20$", " ", "$u27$", "'", "$u5b$", "[", "$u5d$", "]", "$u7e$", "~",
	"..", "::",
)

func unescapeIdent(s string) string {
	if !strings.ContainsAny(s, "$.") {
		return s
	}
	// An identifier that starts with an escape is prefixed with "_".
	if strings.HasPrefix(s, "_$") {
		s = s[1:]
	}
	return identEscapes.Replace(s)
}

// lastIdent is the last identifier of a path: what its mangled name
// surely contains.
func lastIdent(path string) string {
	if i := strings.LastIndex(path, "::"); i >= 0 {
		return path[i+2:]
	}
	return path
}

// short drops the module path of a demangled name.
func short(name string) string {
	parts := strings.Split(name, "::")
	if len(parts) > 2 {
		return strings.Join(parts[len(parts)-2:], "::")
	}
	return name
}
