// The C half of the async target (async.c): everything that touches
// Wasmtime. main.go parses flags, starts the OS threads and calls these.
#ifndef WASMTRACE_ASYNC_H
#define WASMTRACE_ASYNC_H

// wt_init creates the engine (async support on; with pooling != 0 the
// pooling instance allocator, whose stack pool holds the fiber stacks) and
// compiles the modules: nstores interleave modules, the nested module and the
// trap module. slots bounds the instances/stacks the pool must provide.
void wt_init(int pooling, int nstores, int slots);

// Each scenario has a setup, which instantiates (asynchronously) on the
// calling thread, and a run, which never returns.
void *wt_setup_interleave(int nstores);
void wt_run_interleave(void *h);
void *wt_setup_nested(void);
void wt_run_nested(void *h);
void *wt_setup_trap(void);
void wt_run_trap(void *h);

#endif
