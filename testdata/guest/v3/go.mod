module wasmtrace.test/guest

go 1.26.8

require github.com/bytecodealliance/wasmtime-go/v3 v3.0.2
