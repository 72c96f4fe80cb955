module wasmtrace.test/guest

go 1.26.8

require github.com/bytecodealliance/wasmtime-go/v37 v37.0.0
