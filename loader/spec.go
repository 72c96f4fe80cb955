package loader

import "github.com/cilium/ebpf"

// Spec returns the kernel walker's collection spec, for tools and tests
// that inspect or load it themselves.
func Spec() (*ebpf.CollectionSpec, error) { return loadWasmtrace() }
