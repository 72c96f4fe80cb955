package main

// wasmtime-go v37 is imported only for its cgo link flags (its prebuilt
// libwasmtime.a, -lm -ldl -pthread); async.c calls the C API directly.
import _ "github.com/bytecodealliance/wasmtime-go/v37"
