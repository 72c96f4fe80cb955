// The Wasmtime half of the async target: engine, modules, stores, and the
// poll loops of every scenario, in C against Wasmtime's C API (async.h of the
// wasmtime-go module's build/include; build.sh puts it on the include path).
// See README.md for the scenarios and their expected stacks.
//
// All host functions are C: they run on Wasmtime's fiber stacks, where no Go
// code is called.

#include "async.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wasm.h>
#include <wasmtime.h>
#include <wasmtime/async.h>

#ifndef WASMTIME_FEATURE_ASYNC
#error "this libwasmtime has no async support"
#endif
#ifndef WASMTIME_FEATURE_POOLING_ALLOCATOR
#error "this libwasmtime has no pooling allocator"
#endif

// ---- the Wasm ----------------------------------------------------------

// The burn loop of every leaf: ITERS iterations of an LCG, about 20 ms at
// 14M (the loop of testdata/targets: 35M iterations take ~50 ms).
#define BURN(ITERS)                                                            \
  "    (local.set $x (global.get $acc))\n"                                    \
  "    (local.set $i (i32.const " ITERS "))\n"                                \
  "    (loop $spin\n"                                                          \
  "      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const "           \
  "6364136223846793005))\n"                                                    \
  "                             (i64.const 1442695040888963407)))\n"           \
  "      (global.set $acc (i64.xor (global.get $acc) (i64.shr_u (local.get "   \
  "$x) (i64.const 29))))\n"                                                    \
  "      (br_if $spin (local.tee $i (i32.sub (local.get $i) (i32.const "       \
  "1)))))\n"

// interleave (and threads): one module per store index K, so that every
// store's frames have their own names: sK_run -> sK_mid -> host.yield
// (async, pending for a few polls), then sK_mid -> sK_leaf (burns ~20 ms).
// Format: K is substituted 6 times (the module name and the five uses of
// the three function names).
static const char *interleave_wat_fmt =
    "(module $wasmtrace_async_s%d\n"
    "  (import \"host\" \"yield\" (func $host_yield))\n"
    "  (global $acc (mut i64) (i64.const 1))\n"
    "  (func $s%d_run (export \"run\") (result i64)\n"
    "    call $s%d_mid\n"
    "    global.get $acc\n"
    "    i64.add)\n"
    "  (func $s%d_mid (result i64)\n"
    "    call $host_yield\n"
    "    call $s%d_leaf\n"
    "    i64.const 7\n"
    "    i64.add)\n"
    "  (func $s%d_leaf (result i64)\n"
    "    (local $i i32) (local $x i64)\n" BURN("14000000") "    (global.get $acc))\n"
    ")\n";

// nested: n_outer -> n_mid -> host.reenter (async; its callback calls export
// n_inner through wasmtime_func_call_async and polls it to completion) ->
// n_inner -> n_leaf (burns ~20 ms); and h_outer -> h_mid -> host.burn (a
// synchronous host function that spins ~20 ms in C).
static const char *nested_wat =
    "(module $wasmtrace_async_nested\n"
    "  (import \"host\" \"reenter\" (func $host_reenter))\n"
    "  (import \"host\" \"burn\" (func $host_burn))\n"
    "  (global $acc (mut i64) (i64.const 1))\n"
    "  (func $n_outer (export \"n_outer\") (result i64)\n"
    "    call $n_mid\n"
    "    global.get $acc\n"
    "    i64.add)\n"
    "  (func $n_mid (result i64)\n"
    "    call $host_reenter\n"
    "    global.get $acc\n"
    "    i64.const 7\n"
    "    i64.add)\n"
    "  (func $n_inner (export \"n_inner\") (result i64)\n"
    "    call $n_leaf\n"
    "    i64.const 11\n"
    "    i64.add)\n"
    "  (func $n_leaf (result i64)\n"
    "    (local $i i32) (local $x i64)\n" BURN("14000000") "    (global.get $acc))\n"
    "  (func $h_outer (export \"h_outer\") (result i64)\n"
    "    call $h_mid\n"
    "    global.get $acc\n"
    "    i64.add)\n"
    "  (func $h_mid (result i64)\n"
    "    call $host_burn\n"
    "    global.get $acc\n"
    "    i64.const 13\n"
    "    i64.add)\n"
    ")\n";

// trap: t_outer -> t_leaf, which burns ~5 ms and then executes unreachable.
static const char *trap_wat =
    "(module $wasmtrace_async_trap\n"
    "  (global $acc (mut i64) (i64.const 1))\n"
    "  (func $t_outer (export \"t_outer\") (result i64)\n"
    "    call $t_leaf\n"
    "    global.get $acc\n"
    "    i64.add)\n"
    "  (func $t_leaf (result i64)\n"
    "    (local $i i32) (local $x i64)\n" BURN("3500000") "    unreachable)\n"
    ")\n";

// How many polls host.yield's continuation answers "not ready" before it is
// ready (each poll returns at once), and host.reenter's after n_inner is done.
#define YIELD_PENDING_POLLS 3
#define REENTER_PENDING_POLLS 1
// host.burn's C spin, and the pause between two trapping calls.
#define HOST_BURN_NS (20 * 1000 * 1000)
#define TRAP_PAUSE_NS (200 * 1000 * 1000)

// ---- helpers -------------------------------------------------------------

static wasm_engine_t *engine;
static wasmtime_module_t **interleave_modules; // one per store index
static int n_interleave_modules;
static wasmtime_module_t *nested_module, *trap_module;

static void die(const char *what, wasmtime_error_t *err, wasm_trap_t *trap) {
  wasm_byte_vec_t msg = {0};
  if (err != NULL) {
    wasmtime_error_message(err, &msg);
  } else if (trap != NULL) {
    wasm_trap_message(trap, &msg);
  }
  fprintf(stderr, "async: %s: %.*s\n", what, (int)msg.size,
          msg.data ? msg.data : "");
  exit(1);
}

static wasmtime_module_t *compile(const char *wat) {
  wasm_byte_vec_t wasm;
  wasmtime_error_t *err = wasmtime_wat2wasm(wat, strlen(wat), &wasm);
  if (err != NULL) {
    die("wat2wasm", err, NULL);
  }
  wasmtime_module_t *m = NULL;
  err = wasmtime_module_new(engine, (const uint8_t *)wasm.data, wasm.size, &m);
  wasm_byte_vec_delete(&wasm);
  if (err != NULL) {
    die("compile", err, NULL);
  }
  return m;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile uint64_t sink; // keeps the C spin from being dead code

static void spin_ns(uint64_t ns) {
  uint64_t x = sink | 1, deadline = now_ns() + ns;
  while (now_ns() < deadline) {
    for (int i = 0; i < 100000; i++) {
      x = x * 6364136223846793005u + 1442695040888963407u;
    }
  }
  sink = x;
}

// Poll a future until it is ready (busy: every poll returns at once, since
// the only pending host futures here are ready after a few polls), then
// delete it.
static void poll_to_completion(wasmtime_call_future_t *f) {
  while (!wasmtime_call_future_poll(f)) {
  }
  wasmtime_call_future_delete(f);
}

// A store and its one instance, with the state of the call in flight. The
// store's data points back at it (host functions find it from the caller).
typedef struct slot {
  wasmtime_store_t *store;
  wasmtime_context_t *ctx;
  wasmtime_instance_t instance;
  wasmtime_call_future_t *fut; // the call in flight, or NULL
  wasmtime_val_t result;
  wasm_trap_t *trap;
  wasmtime_error_t *err;
  int pending; // polls the current host continuation still answers false
  const char *what;
} slot;

static slot *current_slot(wasmtime_caller_t *caller) {
  return (slot *)wasmtime_context_get_data(wasmtime_caller_context(caller));
}

// The continuation of host.yield and host.reenter: not ready while the
// slot's pending count lasts.
static bool continuation_poll(void *env) {
  slot *s = env;
  if (s->pending > 0) {
    s->pending--;
    return false;
  }
  return true;
}

// host.yield: returns a continuation that is pending for a few polls, so
// the fiber suspends inside this import and the thread's poll loop moves on
// to the next store.
static void host_yield(void *env, wasmtime_caller_t *caller,
                       const wasmtime_val_t *args, size_t nargs,
                       wasmtime_val_t *results, size_t nresults,
                       wasm_trap_t **trap_ret,
                       wasmtime_async_continuation_t *cont) {
  (void)env, (void)args, (void)nargs, (void)results, (void)nresults;
  (void)trap_ret;
  slot *s = current_slot(caller);
  s->pending = YIELD_PENDING_POLLS;
  cont->callback = continuation_poll;
  cont->env = s;
  cont->finalizer = NULL;
}

// host.reenter: synchronously, in this first callback, calls export n_inner
// of the caller's instance with wasmtime_func_call_async and polls that
// future to completion here (Wasmtime runs it on a second, nested fiber).
// Then returns a continuation that is pending for one poll.
static void host_reenter(void *env, wasmtime_caller_t *caller,
                         const wasmtime_val_t *args, size_t nargs,
                         wasmtime_val_t *results, size_t nresults,
                         wasm_trap_t **trap_ret,
                         wasmtime_async_continuation_t *cont) {
  (void)env, (void)args, (void)nargs, (void)results, (void)nresults;
  slot *s = current_slot(caller);
  wasmtime_extern_t inner;
  if (!wasmtime_caller_export_get(caller, "n_inner", strlen("n_inner"),
                                  &inner) ||
      inner.kind != WASMTIME_EXTERN_FUNC) {
    *trap_ret = wasmtime_trap_new("export n_inner not found",
                                  strlen("export n_inner not found"));
    return;
  }
  wasmtime_context_t *ctx = wasmtime_caller_context(caller);
  wasmtime_val_t res;
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *err = NULL;
  wasmtime_call_future_t *f =
      wasmtime_func_call_async(ctx, &inner.of.func, NULL, 0, &res, 1, &trap, &err);
  poll_to_completion(f);
  if (err != NULL || trap != NULL) {
    die("n_inner (nested call_async)", err, trap);
  }
  s->pending = REENTER_PENDING_POLLS;
  cont->callback = continuation_poll;
  cont->env = s;
  cont->finalizer = NULL;
}

// host.burn: a synchronous host function (allowed in an async store) that
// spins in C, on the fiber, on top of h_outer;h_mid.
static wasm_trap_t *host_burn(void *env, wasmtime_caller_t *caller,
                              const wasmtime_val_t *args, size_t nargs,
                              wasmtime_val_t *results, size_t nresults) {
  (void)env, (void)caller, (void)args, (void)nargs, (void)results;
  (void)nresults;
  spin_ns(HOST_BURN_NS);
  return NULL;
}

static wasmtime_linker_t *new_linker(void) {
  wasmtime_linker_t *l = wasmtime_linker_new(engine);
  wasm_functype_t *ty = wasm_functype_new_0_0();
  wasmtime_error_t *err;
  if ((err = wasmtime_linker_define_async_func(l, "host", 4, "yield", 5, ty,
                                               host_yield, NULL, NULL)))
    die("define host.yield", err, NULL);
  if ((err = wasmtime_linker_define_async_func(l, "host", 4, "reenter", 7, ty,
                                               host_reenter, NULL, NULL)))
    die("define host.reenter", err, NULL);
  if ((err = wasmtime_linker_define_func(l, "host", 4, "burn", 4, ty, host_burn,
                                         NULL, NULL)))
    die("define host.burn", err, NULL);
  wasm_functype_delete(ty);
  return l;
}

// new_slot creates a store and instantiates m in it asynchronously (the
// instantiation future is polled to completion on the calling thread).
static slot *new_slot(wasmtime_module_t *m, const char *what) {
  slot *s = calloc(1, sizeof *s);
  s->what = what;
  s->store = wasmtime_store_new(engine, s, NULL);
  s->ctx = wasmtime_store_context(s->store);
  wasmtime_linker_t *l = new_linker();
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *err = NULL;
  wasmtime_call_future_t *f =
      wasmtime_linker_instantiate_async(l, s->ctx, m, &s->instance, &trap, &err);
  poll_to_completion(f);
  if (err != NULL || trap != NULL) {
    die("instantiate", err, trap);
  }
  wasmtime_linker_delete(l);
  return s;
}

static wasmtime_func_t export_func(slot *s, const char *name) {
  wasmtime_extern_t e;
  if (!wasmtime_instance_export_get(s->ctx, &s->instance, name, strlen(name),
                                    &e) ||
      e.kind != WASMTIME_EXTERN_FUNC) {
    fprintf(stderr, "async: export %s not found\n", name);
    exit(1);
  }
  return e.of.func;
}

// start_call starts an async call of f (no params, one i64 result) in s.
// f must stay alive (and unmodified) until the future is deleted.
static void start_call(slot *s, const wasmtime_func_t *f) {
  s->trap = NULL;
  s->err = NULL;
  s->fut = wasmtime_func_call_async(s->ctx, f, NULL, 0, &s->result, 1,
                                    &s->trap, &s->err);
}

// finish_call deletes s's completed future; with want_trap it expects a
// trap (and deletes it), else it expects success.
static void finish_call(slot *s, bool want_trap) {
  wasmtime_call_future_delete(s->fut);
  s->fut = NULL;
  if (s->err != NULL) {
    die(s->what, s->err, NULL);
  }
  if (want_trap) {
    if (s->trap == NULL) {
      fprintf(stderr, "async: %s: returned instead of trapping\n", s->what);
      exit(1);
    }
    wasm_trap_delete(s->trap);
    s->trap = NULL;
  } else if (s->trap != NULL) {
    die(s->what, NULL, s->trap);
  }
}

// ---- public --------------------------------------------------------------

void wt_init(int pooling, int nstores, int slots) {
  wasm_config_t *config = wasm_config_new();
  wasmtime_config_async_support_set(config, true);
  if (pooling) {
    wasmtime_pooling_allocation_config_t *pc =
        wasmtime_pooling_allocation_config_new();
    uint32_t n = (uint32_t)slots;
    wasmtime_pooling_allocation_config_total_core_instances_set(pc, n);
    wasmtime_pooling_allocation_config_total_memories_set(pc, n);
    wasmtime_pooling_allocation_config_total_tables_set(pc, n);
    wasmtime_pooling_allocation_config_total_stacks_set(pc, n);
    wasmtime_pooling_allocation_strategy_set(config, pc);
    wasmtime_pooling_allocation_config_delete(pc);
  }
  engine = wasm_engine_new_with_config(config); // takes the config

  n_interleave_modules = nstores;
  interleave_modules = calloc((size_t)nstores, sizeof *interleave_modules);
  for (int k = 0; k < nstores; k++) {
    char wat[4096];
    snprintf(wat, sizeof wat, interleave_wat_fmt, k, k, k, k, k, k);
    interleave_modules[k] = compile(wat);
  }
  nested_module = compile(nested_wat);
  trap_module = compile(trap_wat);
}

typedef struct interleave {
  int n;
  slot **slots;
  wasmtime_func_t *run; // export "run" of each slot
} interleave;

void *wt_setup_interleave(int nstores) {
  interleave *il = calloc(1, sizeof *il);
  il->n = nstores;
  il->slots = calloc((size_t)nstores, sizeof *il->slots);
  il->run = calloc((size_t)nstores, sizeof *il->run);
  for (int k = 0; k < nstores; k++) {
    char *what = malloc(32);
    snprintf(what, 32, "s%d_run", k);
    il->slots[k] = new_slot(interleave_modules[k], what);
    il->run[k] = export_func(il->slots[k], "run");
  }
  return il;
}

// wt_run_interleave polls the stores' futures round-robin on this thread:
// while store K's fiber burns in sK_leaf, the others are suspended in
// host.yield. A completed call is replaced by a new one.
void wt_run_interleave(void *h) {
  interleave *il = h;
  for (;;) {
    for (int k = 0; k < il->n; k++) {
      slot *s = il->slots[k];
      if (s->fut == NULL) {
        start_call(s, &il->run[k]);
      }
      if (wasmtime_call_future_poll(s->fut)) {
        finish_call(s, false);
      }
    }
  }
}

typedef struct nested {
  slot *s;
  wasmtime_func_t n_outer, h_outer;
} nested;

void *wt_setup_nested(void) {
  nested *n = calloc(1, sizeof *n);
  n->s = new_slot(nested_module, "n_outer/h_outer");
  n->n_outer = export_func(n->s, "n_outer");
  n->h_outer = export_func(n->s, "h_outer");
  return n;
}

// wt_run_nested alternates n_outer and h_outer, each polled to completion.
void wt_run_nested(void *h) {
  nested *n = h;
  for (int i = 0;; i ^= 1) {
    start_call(n->s, i == 0 ? &n->n_outer : &n->h_outer);
    while (!wasmtime_call_future_poll(n->s->fut)) {
    }
    finish_call(n->s, false);
  }
}

typedef struct trapper {
  slot *s;
  wasmtime_func_t t_outer;
} trapper;

void *wt_setup_trap(void) {
  trapper *t = calloc(1, sizeof *t);
  t->s = new_slot(trap_module, "t_outer");
  t->t_outer = export_func(t->s, "t_outer");
  return t;
}

// wt_run_trap calls t_outer (which traps) every TRAP_PAUSE_NS or so.
void wt_run_trap(void *h) {
  trapper *t = h;
  for (;;) {
    start_call(t->s, &t->t_outer);
    while (!wasmtime_call_future_poll(t->s->fut)) {
    }
    finish_call(t->s, true);
    struct timespec ts = {0, TRAP_PAUSE_NS};
    nanosleep(&ts, NULL);
  }
}
