package layout

import "testing"

func TestDemangle(t *testing.T) {
	for in, want := range map[string]string{
		"_ZN8wasmtime7runtime2vm3sys4unix3TLS29_$u7b$$u7b$constant$u7d$$u7d$28_$u7b$$u7b$closure$u7d$$u7d$3VAL17h9cacb950b6012255E": "wasmtime::runtime::vm::sys::unix::TLS::{{constant}}::{{closure}}::VAL",
		"_ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit3VAL17hc15c8d9cbc16999aE":                                           "wasmtime_runtime::traphandlers::tls::raw::PTR::__getit::VAL",
		"_ZN4core3ptr60drop_in_place$LT$wasmtime..config..ModuleVersionStrategy$GT$17h1746858a2943325dE":                            "core::ptr::drop_in_place<wasmtime::config::ModuleVersionStrategy>",
		"main.main": "main.main",
		"_ZN3foo":   "_ZN3foo",
		"_ZN99abcE": "_ZN99abcE",
		"_ZNE":      "",
		"_ZN0E":     "_ZN0E",
	} {
		if got := demangle(in); got != want {
			t.Errorf("demangle(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDemangle(f *testing.F) {
	f.Add("_ZN8wasmtime7runtime3TLS3VAL17h0123456789abcdefE")
	f.Add("_ZN4core3ptr60drop_in_place$LT$wasmtime..config..ModuleVersionStrategy$GT$17h1746858a2943325dE")
	f.Fuzz(func(t *testing.T, s string) {
		_ = demangle(s)
	})
}
