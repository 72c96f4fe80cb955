package main

// Linked for its cgo flags: they link libwasmtime.a, whose C API main.go
// calls directly.
import _ "github.com/bytecodealliance/wasmtime-go/v39"
