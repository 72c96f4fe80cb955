package main

// The libwasmtime.a shipped with wasmtime-go v3 contains an object (x86_64.o)
// without a .note.GNU-stack section, so GNU ld warns and marks the program
// stack executable (GNU_STACK RWE, which also makes glibc map every thread
// stack rwx). Ask for a non-executable stack explicitly, as v37/v39 get by
// default.

// #cgo LDFLAGS: -Wl,-z,noexecstack
import "C"
