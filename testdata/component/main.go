// Command component-vN is a Wasmtime embedder that runs a WebAssembly
// component: a profiling target for wasmtrace's component tests.
//
// This one file is the program for every version: each of
// testdata/component/{v39,v37} is a module (named wasmtrace.test/component)
// that links main.go here and imports its wasmtime-go major version, whose
// cgo flags link libwasmtime.a. The Wasmtime C API is used directly
// (wasmtime/component.h, wasi.h: build.sh points CGO_CFLAGS at the headers
// shipped in the wasmtime-go module), since wasmtime-go has no component
// API.
//
// Command line:
//
//	component-vN -component FILE.wasm -export NAME
//
// The component is compiled (default config plus the component model),
// linked with WASI 0.2 (wasmtime_component_linker_add_wasip2, and a
// default WASI context: no preopens, no arguments, stdout and stderr
// inherited; set with wasmtime_context_set_wasi in 39, with v37's
// wasmtime_context_set_wasip2 there) and
// instantiated with wasmtime_component_linker_instantiate. Export NAME must
// be a function with no parameters and one scalar result; one OS thread
// (never the main thread) calls it in a loop forever, and the program
// prints the single line "ready" right before the first call.
package main

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi.h>
#include <wasmtime.h>
#include <wasmtime/component.h>

static char *err_message(wasmtime_error_t *err, const char *what) {
	wasm_byte_vec_t msg;
	wasmtime_error_message(err, &msg);
	size_t n = strlen(what) + 2 + msg.size + 1;
	char *s = malloc(n);
	snprintf(s, n, "%s: %.*s", what, (int)msg.size, msg.data);
	wasm_byte_vec_delete(&msg);
	wasmtime_error_delete(err);
	return s;
}

typedef struct {
	wasmtime_store_t *store;
	wasmtime_context_t *cx;
	wasmtime_component_func_t func;
} target_t;

// target_new compiles, links and instantiates the component and finds the
// export. It returns NULL on success, else a malloc'd message.
static char *target_new(const uint8_t *wasm, size_t len, const char *export, target_t *t) {
	wasm_config_t *config = wasm_config_new();
	wasmtime_config_wasm_component_model_set(config, true);
	wasm_engine_t *engine = wasm_engine_new_with_config(config);
	wasmtime_component_t *component = NULL;
	wasmtime_error_t *err = wasmtime_component_new(engine, wasm, len, &component);
	if (err) return err_message(err, "compile component");

	wasmtime_component_linker_t *linker = wasmtime_component_linker_new(engine);
	err = wasmtime_component_linker_add_wasip2(linker);
	if (err) return err_message(err, "add WASI 0.2 to the linker");

	t->store = wasmtime_store_new(engine, NULL, NULL);
	t->cx = wasmtime_store_context(t->store);
#if WASMTIME_VERSION_MAJOR >= 39
	// Since 39 one WASI context serves WASI 0.1 and 0.2.
	wasi_config_t *wasi = wasi_config_new();
	wasi_config_inherit_stdout(wasi);
	wasi_config_inherit_stderr(wasi);
	err = wasmtime_context_set_wasi(t->cx, wasi);
	if (err) return err_message(err, "set the WASI context");
#else
	// Up to 38 components have a context of their own (wasmtime/wasip2.h).
	wasmtime_wasip2_config_t *wasi = wasmtime_wasip2_config_new();
	wasmtime_wasip2_config_inherit_stdout(wasi);
	wasmtime_wasip2_config_inherit_stderr(wasi);
	wasmtime_context_set_wasip2(t->cx, wasi);
#endif

	wasmtime_component_instance_t instance;
	err = wasmtime_component_linker_instantiate(linker, t->cx, component, &instance);
	if (err) return err_message(err, "instantiate");
	wasmtime_component_export_index_t *idx = wasmtime_component_instance_get_export_index(
		&instance, t->cx, NULL, export, strlen(export));
	if (!idx) return strdup("no such export");
	bool ok = wasmtime_component_instance_get_func(&instance, t->cx, idx, &t->func);
	wasmtime_component_export_index_delete(idx);
	if (!ok) return strdup("export is not a function");
	return NULL;
}

// target_call calls the export once. NULL on success, else a malloc'd message.
static char *target_call(target_t *t) {
	wasmtime_component_val_t result;
	memset(&result, 0, sizeof result);
	wasmtime_error_t *err = wasmtime_component_func_call(&t->func, t->cx, NULL, 0, &result, 1);
	if (err) return err_message(err, "call");
	wasmtime_component_val_delete(&result);
	err = wasmtime_component_func_post_return(&t->func, t->cx);
	if (err) return err_message(err, "post-return");
	return NULL;
}
*/
import "C"

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"time"
	"unsafe"
)

func init() {
	// Keep the main goroutine on the main thread (TID == PID), which then
	// never runs Wasm.
	runtime.LockOSThread()
}

func check(msg *C.char) {
	if msg != nil {
		log.Fatal(C.GoString(msg))
	}
}

func main() {
	file := flag.String("component", "", "the component `FILE` (.wasm) to run (required)")
	export := flag.String("export", "run", "the export to call in a loop: a function with no parameters and one scalar result")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("component: ")
	if *file == "" || flag.NArg() != 0 {
		log.Fatal("usage: component-vN -component FILE.wasm [-export NAME]")
	}
	wasm, err := os.ReadFile(*file)
	if err != nil {
		log.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		cwasm := C.CBytes(wasm)
		cexport := C.CString(*export)
		var t C.target_t
		check(C.target_new((*C.uint8_t)(cwasm), C.size_t(len(wasm)), cexport, &t))
		C.free(unsafe.Pointer(cexport))
		close(started)
		for {
			check(C.target_call(&t))
		}
	}()
	<-started
	fmt.Fprintln(os.Stdout, "ready")
	_ = os.Stdout.Sync()
	for {
		time.Sleep(time.Hour)
	}
}
