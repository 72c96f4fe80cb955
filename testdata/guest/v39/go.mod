module wasmtrace.test/guest

go 1.26.8

require github.com/bytecodealliance/wasmtime-go/v39 v39.0.1
