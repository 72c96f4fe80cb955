//go:build ignore

/* wasmtrace's kernel walker: on each perf sample of a traced process, find
 * the Wasm frames on the sampled thread's stack the way Wasmtime's own
 * backtrace does (crates/wasmtime/src/runtime/vm/traphandlers/backtrace.rs),
 * and send their PCs to userspace. walker/walker.go is the same algorithm in
 * Go, step for step; keep the two in sync.
 *
 * `wasmtrace trace` runs the same walk (walk_user) on events instead of
 * samples: a trap signal about to be delivered, the entry of a chosen
 * system call, a thread leaving and re-entering the CPU, a uprobe. Each
 * program takes the thread's user registers (saved on kernel entry, or the
 * uprobe's) and sends the walk tagged with the event and its arguments
 * (wt_sample.event, .args), at most wt_trace_config.max_per_sec a second.
 *
 * The stack of a thread that entered Wasm twice (host -> Wasm -> host -> Wasm):
 *
 *        higher addresses (older)
 *   | host frames (main, ...)        |
 *   | entry trampoline frame         | <- bound of activation 1 (entry FP,
 *   |--------------------------------|    or entry SP - gap in the seed)
 *   | Wasm frames of activation 1    |
 *   | exit trampoline frame          | <- saved exit (trampoline) FP, exit PC
 *   | host frames (a host function)  |
 *   | entry trampoline frame         | <- bound of activation 0
 *   |--------------------------------|
 *   | Wasm frames of activation 0    | <- sampled PC/FP if in Wasm, else
 *   | exit trampoline frame          |    the store's exit FP/PC
 *   | host frames                    | <- sampled PC if in host code
 *        lower addresses (newer), stack grows down
 *
 * Each Wasm frame is a record [fp] = caller's FP, [fp+8] = return address.
 *
 * Async Wasmtime runs each call on a fiber: a stack of its own, in a mapping
 * that is not the thread's. While a fiber runs, the thread-local chain
 * holds its CallThreadStates first, and the oldest of them links to what
 * the chain held when the fiber was resumed (the thread's own activations,
 * if the executor was itself called from Wasm); a suspended fiber's
 * CallThreadStates are unlinked, so no thread's chain reaches them:
 *
 *     thread's own stack                 fiber stack
 *   | main, executor ...        |      | fiber start                |
 *   | (own activations, if any) |      | entry trampoline frame     | <- bound, fiber
 *   | resume: switch stacks  ---+----> | Wasm frames, host frames   |
 *                                      | CTS (innermost, in TLS)    |
 *
 * Resuming, Wasmtime swaps the fiber's saved state into the store and then
 * links its CallThreadStates into the chain, on the thread's own stack;
 * suspending, it unlinks them and swaps back, again on the thread's own
 * stack. A thread that runs on its own stack while its chain names a CTS
 * elsewhere is therefore in the middle of a switch.
 *
 * The algorithm:
 *  1. Find the thread's innermost CallThreadState (CTS) through the
 *     thread-local slot at fsbase + tls_offset. None: no Wasm on the stack.
 *     Then the bounds of the thread's own stack (wt_stacks). Sampled on its
 *     own stack with the CTS elsewhere, or in Wasm on another stack with
 *     the CTS on its own: a fiber switch in progress.
 *  2. Read its store's current exit PC/FP and entry bound. If they still
 *     equal what this CTS saved on entry, its trampoline has not run yet (or
 *     has been undone): the CTS contributes no region.
 *  3. First region: if the sampled PC is in compiled Wasm code, start from
 *     the sampled registers (fixing up the first frame in a prologue or at a
 *     ret), bounded by the store's entry bound; otherwise start from the
 *     store's exit PC/FP (the last Wasm frame before the host was called).
 *  4. Walk a region: while fp != bound, check fp < bound, fp aligned and
 *     pc != 0; emit pc; pc = [fp+ra_offset], fp' = [fp+fp_offset]; check
 *     fp' > fp.
 *  5. Next region: follow CTS.prev from the innermost CTS, skipping those of
 *     other stores; each one's saved values (inline, or in the
 *     EntryStoreContext it points to) are the exit PC/FP and bound of the
 *     next older activation. An exit PC of 0 ends the stack. Each older
 *     bound must lie above the newer one on the same stack. Activations on
 *     fibers come before those on the thread's own stack: the walk may
 *     leave the fibers for the thread's stack once, never come back; the
 *     innermost activation lies on a fiber whenever the sampled SP does not
 *     lie on the thread's stack. A CTS whose saved stack limit is
 *     Some(usize::MAX) belongs to the oldest activation of its store on its
 *     stack (async stores set a fresh limit at every entry, and a fiber
 *     starts with none): the next older activation is on another stack.
 *     The order check starts over on each new stack.
 * Every failed check ends the walk with its wt_stop code; the frames found so
 * far are still sent, flagged by that code, and userspace decides.
 *
 * Copies: a bpf_probe_read_user costs about as much for 8 bytes as for a
 * few hundred, so the walk copies what it is about to read in one read
 * each. First the stack from the sampled SP to just above the innermost
 * CTS, which holds the innermost activation's frames, the CTS and usually
 * its saved values. Then the words of each store, and of any CTS or saved
 * values outside that copy (wt_layout's spans). Then, when an older region
 * starts, the stack from its first FP up to its bound. read_word serves
 * words from those copies and reads user memory only outside them. The
 * copies change no result: a word is served from a copy only if the copy
 * was read whole, and the sampled thread is stopped while we read. The Go
 * walker therefore has no copies; what the kernel sends and logs is the
 * same word by word.
 *
 * Verification (wasmtrace record --verify): for a configurable fraction of
 * samples, every user-memory read of the algorithm is logged, in order,
 * with its address, size, result and bytes (struct wt_readlog), and sent
 * after the sample. Userspace replays the walk over exactly those bytes
 * with the Go walker and compares. A logged sample reads every word
 * directly as well and logs that; a word its copy disagrees with marks
 * the log WT_LOG_COPY_MISMATCH, which userspace reports as a difference.
 * Unlogged samples pay one flag test per read.
 */

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "wasmtrace.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Traced processes, keyed by tgid. Written by the loader, read here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct wt_process);
} processes SEC(".maps");

/* The compiled-code ranges of every traced process (wasmtrace.h,
 * WT_RANGE_SLOTS). Written by the loader, read here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WT_RANGE_SLOTS);
	__type(key, __u32);
	__type(value, struct wt_range);
} code_ranges SEC(".maps");

/* Samples for userspace. Written here, read by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} samples SEC(".maps");

/* A sample under construction, with its read log: too large for the
 * 512-byte BPF stack. Written and read here only. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_record);
} scratch SEC(".maps");

/* The spans of struct wt_copies: Wasmtime's records, and the thread's
 * glibc TCB. */
enum { SPAN_CTS = 0, SPAN_SAVED = 1, SPAN_STORE = 2, SPAN_TCB = 3, WT_SPANS = 4 };

/* What the walk copied from user memory (see Copies above). */
struct wt_copies {
	__u64 stack_lo, stack_len;
	__u64 span_lo[WT_SPANS], span_len[WT_SPANS];
	__u8 stack[WT_WINDOW_BYTES];
	__u8 span[WT_SPANS][WT_SPAN_BYTES];
};


/* The walk's copies of user memory, too large for the BPF stack and kept
 * apart from scratch, whose value is near the kernel's 32 KiB limit. Written
 * and read here only. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_copies);
} copies SEC(".maps");

/* The histogram of the perf program's time (wasmtrace.h), off unless a
 * benchmark (bench/) sets on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_timing);
} timing SEC(".maps");

/* enum wt_counter, per CPU. Written here, summed by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WT_COUNTER__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* bpf2go emits Go types only for types in the object's BTF; these anchors put
 * the enums there. */
const enum wt_stop *unused_stop __attribute__((unused));
const enum wt_where *unused_where __attribute__((unused));
const enum wt_bound_kind *unused_bound __attribute__((unused));
const enum wt_counter *unused_counter __attribute__((unused));
const enum wt_limit *unused_limit __attribute__((unused));
const enum wt_sample_flag *unused_sample_flag __attribute__((unused));
const enum wt_log_flag *unused_log_flag __attribute__((unused));
const struct wt_timing *unused_timing __attribute__((unused));

/* x86-64 struct pt_regs, user and kernel alike. */
struct wt_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* The perf_event program context (struct bpf_perf_event_data). */
struct wt_perf_ctx {
	struct wt_regs regs;
	__u64 sample_period;
	__u64 addr;
};

/* Just the fields we read, relocated by CO-RE against the running kernel. */
struct thread_struct {
	unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
	int pid;
} __attribute__((preserve_access_index));

struct walk {
	struct wt_layout l;
	__u64 pc, fp, bound;  /* the region being walked */
	__u64 prev_bound;     /* bound of the newer activation, 0 before the first */
	__u64 cts;            /* next CTS to consult for an older region */
	__u64 store;          /* the sampled store: other stores' CTSs are skipped */
	__u64 own_lo, own_hi; /* the thread's own stack */
	__u32 in_region;
	__u8 sp_own;          /* the sampled SP is on the thread's own stack */
	__u8 on_fiber;        /* the current region is on a fiber */
	__u8 new_stack;       /* the region about to start is on another stack than the
	                         current one (its CTS's saved stack limit says so) */
	__u8 stop;
	__u8 done;
};

static __always_inline void count(__u32 counter)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &counter);
	if (v)
		*v += 1;
}

/* Appends one read to a verified sample's log. The count lives in the map
 * value, where the verifier sees an unknown number: a count it could track
 * as a constant would make it verify every loop iteration apart. */
static __always_inline void log_read(struct wt_record *r, __u64 addr, const void *dst, __u32 size,
				     long err)
{
	__u32 n = r->log.nreads;

	if (n >= WT_MAX_READS) {
		r->log.flags |= WT_LOG_OVERFLOW;
		return;
	}
	struct wt_read *e = &r->log.reads[n];
	e->addr = addr;
	e->size = size;
	e->err = err;
	e->value = 0;
	if (!err)
		__builtin_memcpy(&e->value, dst, size);
	r->log.nreads = n + 1;
}

/* Every user-memory read of the walk goes through here. size is a
 * constant of at most 8 at each (inlined) call. */
static __always_inline long read_user(struct wt_record *r, void *dst, __u32 size, __u64 addr)
{
	long err = bpf_probe_read_user(dst, size, (const void *)addr);

	if (r->s.flags & WT_SAMPLE_LOGGED)
		log_read(r, addr, dst, size, err);
	return err;
}

/* The word at addr from the copies, if one holds it whole. */
static __always_inline int copied(const struct wt_copies *c, __u64 addr, __u64 *dst)
{
	__u64 off = addr - c->stack_lo;

	if (off <= WT_WINDOW_BYTES - 8 && off + 8 <= c->stack_len) {
		__builtin_memcpy(dst, &c->stack[off], 8);
		return 1;
	}
	for (int i = 0; i < WT_SPANS; i++) {
		off = addr - c->span_lo[i];
		if (off <= WT_SPAN_BYTES - 8 && off + 8 <= c->span_len[i]) {
			__builtin_memcpy(dst, &c->span[i][off], 8);
			return 1;
		}
	}
	return 0;
}

/* A word of user memory, from the copies when they hold it. Returns
 * non-zero when it could not be read. A global function: the verifier
 * checks it once rather than at each of its many call sites. */
__attribute__((noinline)) int read_word(struct wt_record *r, const struct wt_copies *c, __u64 *dst,
					__u64 addr)
{
	if (!r || !c || !dst)
		return 1;
	if (!copied(c, addr, dst))
		return read_user(r, dst, sizeof(*dst), addr) != 0;
	if (r->s.flags & WT_SAMPLE_LOGGED) {
		__u64 direct = 0;
		long err = bpf_probe_read_user(&direct, sizeof(direct), (const void *)addr);

		log_read(r, addr, &direct, sizeof(direct), err);
		if (err || direct != *dst)
			r->log.flags |= WT_LOG_COPY_MISMATCH;
	}
	return 0;
}

/* Copies [base + span.lo, + span.len) into span slot i, unless it holds
 * those bytes already. A failed copy holds nothing: its words are then
 * read one by one, and fail or not on their own. */
static __always_inline void copy_span(struct wt_copies *c, int i, __u64 base, struct wt_span span)
{
	__u64 lo = base + span.lo, len = span.len;

	if (len == 0 || (c->span_lo[i] == lo && c->span_len[i] == len) ||
	    (lo - c->stack_lo <= c->stack_len && c->stack_lo + c->stack_len - lo >= len))
		return; /* held already, maybe by the stack copy */
	if (len > WT_SPAN_BYTES)
		len = WT_SPAN_BYTES;
	if (bpf_probe_read_user(c->span[i], len, (const void *)lo))
		len = 0;
	c->span_lo[i] = lo;
	c->span_len[i] = len;
}

/* Copies the stack from lo up to hi, at most WT_WINDOW_BYTES of it, unless
 * the stack copy holds those bytes already. */
static __always_inline void copy_stack(struct wt_copies *c, __u64 lo, __u64 hi)
{
	__u64 len = hi - lo;

	if (hi <= lo || (lo - c->stack_lo <= c->stack_len && c->stack_lo + c->stack_len >= hi))
		return;
	if (len > WT_WINDOW_BYTES)
		len = WT_WINDOW_BYTES;
	if (bpf_probe_read_user(c->stack, len, (const void *)lo))
		len = 0;
	c->stack_lo = lo;
	c->stack_len = len;
}

/* The range the last search on this CPU found, and the configuration
 * (wt_process.gen, new with every update of any process) it belongs to:
 * consecutive samples, and a sample's PC and its caller, are mostly in one
 * module, and a search of thousands of ranges misses the cache at every
 * step. Written and read here only. */
struct wt_range_hit {
	__u32 gen;
	__u32 _pad;
	__u64 start, end;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_range_hit);
} range_hit SEC(".maps");

/* One step of the binary search of a process's compiled-code ranges:
 * [lo, hi) are the candidates, relative to base. */
struct range_search {
	__u64 pc;
	__u64 start, end; /* the range found */
	__u32 base, lo, hi, found;
};

/* Bisection steps per bpf_loop iteration: a call per step would cost more
 * than the steps themselves. */
#define WT_RANGE_STEPS_PER_CALL 4

static long range_step(__u32 i, void *ctx)
{
	struct range_search *q = ctx;

	for (int k = 0; k < WT_RANGE_STEPS_PER_CALL; k++) {
		if (q->lo >= q->hi)
			return 1;
		__u32 mid = q->lo + (q->hi - q->lo) / 2, key = q->base + mid;
		const struct wt_range *r = bpf_map_lookup_elem(&code_ranges, &key);
		if (!r)
			return 1;
		if (q->pc < r->start) {
			q->hi = mid;
		} else if (q->pc >= r->end) {
			q->lo = mid + 1;
		} else {
			q->found = 1;
			q->start = r->start;
			q->end = r->end;
			return 1;
		}
	}
	return 0;
}

/* Code each traced process made executable lately, keyed by tgid (struct
 * wt_recent). Written by wasmtrace_code and wasmtrace_unmap, read by walks;
 * the loader deletes a process's entry when it stops tracing it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct wt_recent);
} recent_code SEC(".maps");

/* Whether pc is in code process pid published after covered_ns. A global
 * function: its loop is verified once, not at each caller. The entry's
 * lo is read before its hi, and wasmtrace_code writes hi = 0 before lo:
 * on x86 (stores and loads each in order) a half-written entry matches
 * nothing. */
__noinline int in_recent(__u32 pid, __u64 covered_ns, __u64 pc)
{
	struct wt_recent *rc = bpf_map_lookup_elem(&recent_code, &pid);

	if (!rc || rc->newest_ns <= covered_ns)
		return 0;
	for (int i = 0; i < WT_RECENT; i++) {
		__u64 lo = rc->lo[i];
		__u64 hi = rc->hi[i];
		if (pc >= lo && pc < hi)
			return 1;
	}
	return 0;
}

/* Whether pc is compiled Wasm code of process p: a binary search of its
 * sorted ranges, with bpf_loop (an open-coded loop makes the verifier walk
 * every path through it). */
static __always_inline int in_ranges(const struct wt_process *p, __u64 pc)
{
	struct range_search q = { .pc = pc, .base = p->ranges_off, .hi = p->nranges };
	__u32 zero = 0;
	struct wt_range_hit *hit = bpf_map_lookup_elem(&range_hit, &zero);

	if (hit && hit->gen == p->gen && pc - hit->start < hit->end - hit->start)
		return 1;
	if (q.hi > WT_RANGE_SLOTS)
		q.hi = WT_RANGE_SLOTS;
	bpf_loop((WT_RANGE_SEARCH_STEPS + WT_RANGE_STEPS_PER_CALL - 1) / WT_RANGE_STEPS_PER_CALL, range_step, &q, 0);
	if (q.found && hit) {
		hit->gen = p->gen;
		hit->start = q.start;
		hit->end = q.end;
	}
	/* Not cached: the entries change without the gen changing. */
	return q.found || in_recent(p->pid, p->covered_ns, pc);
}

static __always_inline long finish(struct walk *w, __u8 stop)
{
	w->stop = stop;
	w->done = 1;
	return 1; /* ends bpf_loop */
}

/* The last Wasm FP of an activation, from its saved exit FP field: newer
 * builds save the exit trampoline's FP, whose record holds the Wasm FP. */
static __always_inline int exit_fp(struct walk *w, struct wt_record *r,
				   const struct wt_copies *c, __u64 field, __u64 *fp)
{
	*fp = field;
	if (w->l.exit_fp_indirect && field != 0)
		return read_word(r, c, fp, field);
	return 0;
}

/* Step 3/5: begin walking a region from its exit PC, last Wasm FP and raw
 * entry field. Returns 1 when the walk is over. A global function, like
 * read_word: verified once, not at each call site with each state of the
 * walk's flags. */
__attribute__((noinline)) long begin_region(struct walk *w, struct wt_record *r,
					    struct wt_copies *c, __u64 entry)
{
	if (!w || !r || !c)
		return 1;
	struct wt_sample *s = &r->s;
	__u64 pc = w->pc, fp = w->fp, bound;

	if (pc == 0)
		return finish(w, WT_STOP_OK); /* no older activation */
	if (w->l.bound_kind == WT_BOUND_ENTRY_SP) {
		if (entry == (__u64)-1) {
			w->in_region = 0; /* the seed's marker of an empty region */
			return 0;
		}
		if (w->l.seed_sp_align == 0 || entry % w->l.seed_sp_align != w->l.seed_sp_rem)
			return finish(w, WT_STOP_ENTRY_ALIGN);
		bound = entry - w->l.seed_gap;
	} else {
		bound = entry;
	}
	/* Which stack the region is on: fibers first, then the thread's own
	 * stack, where the order of bounds starts over. */
	__u8 fiber = !(w->own_lo <= bound && bound < w->own_hi);
	__u32 n = s->nact;
	if (fiber && (n ? !w->on_fiber : w->sp_own))
		return finish(w, WT_STOP_FIBER_SWITCH);
	if (n && (w->new_stack || w->on_fiber != fiber)) {
		s->stack_ends |= 1u << ((n - 1) & (WT_MAX_ACTIVATIONS - 1));
		w->prev_bound = 0;
	}
	w->new_stack = 0;
	if (bound <= w->prev_bound)
		return finish(w, WT_STOP_ACT_ORDER);
	if (n >= WT_MAX_ACTIVATIONS)
		return finish(w, WT_STOP_TOO_DEEP);
	s->act_start[n & (WT_MAX_ACTIVATIONS - 1)] = s->nframes;
	s->nact = n + 1;
	if (fiber)
		s->fiber_acts |= 1u << (n & (WT_MAX_ACTIVATIONS - 1));
	w->on_fiber = fiber;
	/* The region's frames: up to the words of the last frame below the
	 * bound. */
	copy_stack(c, fp, bound + 16);
	w->bound = bound;
	w->prev_bound = bound;
	w->in_region = 1;
	return 0;
}

/* begin_region, its pc and fp passed in the walk (a BPF call takes five
 * arguments at most). */
static __always_inline long start_region(struct walk *w, struct wt_record *r, struct wt_copies *c,
					 __u64 pc, __u64 fp, __u64 entry)
{
	w->pc = pc;
	w->fp = fp;
	long done = begin_region(w, r, c, entry);

	/* The verifier sees a global function's result as any number, and
	 * bpf_loop wants 0 or 1 from its callback; the compiler, which can
	 * see that begin_region returns only those, must not drop the test. */
	asm volatile("" : "+r"(done));
	return done ? 1 : 0;
}

/* Where a CTS keeps what the store held before its activation began. */
static __always_inline int saved_base(struct walk *w, struct wt_record *r, struct wt_copies *c,
				      __u64 cts, __u64 *base)
{
	if (!w->l.cts_old_indirect) {
		*base = cts; /* and the CTS span holds them */
		return 0;
	}
	if (read_word(r, c, base, cts + w->l.cts_old))
		return 1;
	copy_span(c, SPAN_SAVED, *base, w->l.saved_span);
	return 0;
}

/* Step 5: the next older region, from the next CTS of the same store. */
static __always_inline long next_region(struct walk *w, struct wt_record *r, struct wt_copies *c)
{
	__u64 cts = w->cts, store, prev, base, pc, fp, entry;

	if (cts == 0)
		return finish(w, WT_STOP_OK);
	copy_span(c, SPAN_CTS, cts, w->l.cts_span);
	if (read_word(r, c, &store, cts + w->l.cts_store) || read_word(r, c, &prev, cts + w->l.cts_prev))
		return finish(w, WT_STOP_READ);
	w->cts = prev;
	if (store != w->store)
		return 0; /* another store's activation: opaque host code to us */
	if (saved_base(w, r, c, cts, &base) || read_word(r, c, &pc, base + w->l.old_exit_pc) ||
	    read_word(r, c, &fp, base + w->l.old_exit_fp) || read_word(r, c, &entry, base + w->l.old_entry) ||
	    (pc != 0 && exit_fp(w, r, c, fp, &fp)))
		return finish(w, WT_STOP_READ);
	if (pc != 0 && w->l.old_limit_known) {
		__u64 tag, limit;

		if (read_word(r, c, &tag, base + w->l.old_limit_tag) ||
		    read_word(r, c, &limit, base + w->l.old_limit_value))
			return finish(w, WT_STOP_READ);
		w->new_stack = tag == 1 && limit == (__u64)-1;
	}
	return start_region(w, r, c, pc, fp, entry);
}

/* Step 4: one frame of the current region (or a move to the next region). */
static long walk_step(__u32 i, void *ctx)
{
	struct walk *w = ctx;
	__u32 zero = 0;
	struct wt_record *r = bpf_map_lookup_elem(&scratch, &zero);
	struct wt_copies *c = bpf_map_lookup_elem(&copies, &zero);
	__u64 fp = w->fp, ra, older;

	if (!r || !c)
		return finish(w, WT_STOP_READ);
	struct wt_sample *s = &r->s;
	if (!w->in_region)
		return next_region(w, r, c);
	if (fp == w->bound) {
		w->in_region = 0; /* reached the entry trampoline */
		return 0;
	}
	if (fp > w->bound)
		return finish(w, WT_STOP_FP_BOUND);
	if (w->l.fp_align == 0 || fp % w->l.fp_align != 0)
		return finish(w, WT_STOP_FP_ALIGN);
	if (w->pc == 0)
		return finish(w, WT_STOP_PC_ZERO);
	if (s->nframes >= WT_MAX_FRAMES)
		return finish(w, WT_STOP_TOO_DEEP);
	s->pcs[s->nframes & (WT_MAX_FRAMES - 1)] = w->pc;
	s->nframes++;
	/* The frame record straight from the stack copy when it is there:
	 * this is the cost of a deep stack. A logged sample reads it word by
	 * word as well, for the log, and checks the two agree. */
	__u64 off = fp - c->stack_lo, rec[2];
	int fast = off <= WT_WINDOW_BYTES - 16 && off + 16 <= c->stack_len;
	if (fast) {
		__builtin_memcpy(rec, &c->stack[off], 16);
		ra = rec[w->l.ra_offset == 8];
		older = rec[w->l.fp_offset == 8];
	}
	if (!fast || (s->flags & WT_SAMPLE_LOGGED)) {
		if (read_word(r, c, &rec[0], fp + w->l.ra_offset) ||
		    read_word(r, c, &rec[1], fp + w->l.fp_offset))
			return finish(w, WT_STOP_READ);
		if (fast && (rec[0] != ra || rec[1] != older))
			r->log.flags |= WT_LOG_COPY_MISMATCH;
		ra = rec[0];
		older = rec[1];
	}
	if (older <= fp)
		return finish(w, WT_STOP_FP_ORDER);
	w->pc = ra;
	w->fp = older;
	return 0;
}

/* The three user registers a walk starts from. (A whole struct wt_regs
 * would not fit on the BPF stack beside the walk.) */
struct wt_uregs {
	__u64 ip, bp, sp;
};

/* The current thread's user registers, saved on kernel entry. */
static __always_inline int task_user_regs(struct wt_uregs *r)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct wt_regs *regs = (const struct wt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return -1;
	return bpf_probe_read_kernel(&r->ip, sizeof(r->ip), &regs->ip) ||
	       bpf_probe_read_kernel(&r->bp, sizeof(r->bp), &regs->bp) ||
	       bpf_probe_read_kernel(&r->sp, sizeof(r->sp), &regs->sp);
}

/* The sampled thread's user registers: in the perf context when the sample
 * hit user mode, otherwise (a system call, a fault) saved on kernel entry. */
static __always_inline int user_regs(struct wt_perf_ctx *ctx, struct wt_uregs *r)
{
	if (ctx->regs.cs & 3) {
		r->ip = ctx->regs.ip;
		r->bp = ctx->regs.bp;
		r->sp = ctx->regs.sp;
		return 0;
	}
	return task_user_regs(r);
}

/* x86-64, step 3: a Cranelift function sets up its frame with
 * push %rbp (55); mov %rsp,%rbp (48 89 e5) and leaves it with pop %rbp; ret
 * (c3), or pop %rbp; ret $N (c2 N) where Wasmtime's tail-call convention has
 * the callee pop its stack arguments (37 and 39: a tenth of a large guest's
 * functions). Sampled on one of those instructions, rbp is still the caller's
 * frame, and the caller's PC is on top of the stack ([sp] before the push
 * and at the ret, [sp+8] after the push). Returns that PC, or 0 when rbp is
 * the sampled function's own frame.
 *
 * The top of the stack comes first (from the stack copy): on those
 * instructions it holds a return address into compiled code or the
 * caller's FP. When it holds neither, the function is in its body and the
 * code, a page the walk touches nowhere else, is not read. */
static __always_inline __u64 caller_pc_outside_frame(struct wt_record *r, const struct wt_copies *c,
						     const struct wt_process *p, __u64 ip, __u64 sp,
						     __u64 fp)
{
	__u8 code[3] = {};
	__u64 top = 0, ra = 0;

	if (read_word(r, c, &top, sp) || (top != fp && !in_ranges(p, top)))
		return 0;
	if (read_user(r, code, 1, ip))
		return 0;
	if (code[0] == 0x55 || code[0] == 0xc3 || code[0] == 0xc2)
		return top;
	if (code[0] == 0x48 && !read_user(r, code, 3, ip) && code[1] == 0x89 && code[2] == 0xe5) {
		read_word(r, c, &ra, sp + 8);
		return ra;
	}
	return 0;
}

/* Perf samples wake the reader only once this much is waiting: userspace
 * drains the ring at every refresh (200 ms) anyway, and a wake-up per sample
 * cost it more than the walk. Events of `wasmtrace trace` wake it at once. */
#define WT_WAKEUP_BYTES (256 << 10)

static __always_inline void send(struct wt_record *r, int batch)
{
	__u64 n, size, flags = 0;

	if (r->s.flags & WT_SAMPLE_LOGGED) {
		n = r->log.nreads;
		if (n > WT_MAX_READS)
			n = WT_MAX_READS;
		size = __builtin_offsetof(struct wt_record, log.reads) + n * sizeof(struct wt_read);
	} else {
		n = r->s.nframes;
		if (n > WT_MAX_FRAMES)
			n = WT_MAX_FRAMES;
		size = __builtin_offsetof(struct wt_sample, pcs) + n * sizeof(__u64);
	}
	if (batch)
		flags = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA) >= WT_WAKEUP_BYTES ?
				BPF_RB_FORCE_WAKEUP :
				BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&samples, r, size, flags))
		count(WT_COUNTER_LOST);
}

/* Starts a record in the per-CPU scratch value for an event of the process
 * p: the header, the read log when verify says so. */
static __always_inline struct wt_record *begin(const struct wt_process *p, __u64 id, __u16 event,
					       int verify)
{
	__u32 zero = 0;
	struct wt_record *r = bpf_map_lookup_elem(&scratch, &zero);

	if (!r)
		return 0;
	struct wt_sample *s = &r->s;
	__builtin_memset(s, 0, __builtin_offsetof(struct wt_sample, pcs));
	/* Verification: this sample logs its reads (read_user) when chosen. */
	if (verify && p->verify_below && (__u64)bpf_get_prandom_u32() < p->verify_below) {
		s->flags = WT_SAMPLE_LOGGED;
		r->log.fsbase = 0;
		r->log.gen = p->gen;
		r->log.flags = 0;
		r->log.nreads = 0;
	}
	s->event = event;
	s->time_ns = bpf_ktime_get_ns();
	s->pid = id >> 32;
	s->tid = (__u32)id;
	s->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	return r;
}

/* Step 1: the bounds of the current thread's own stack, into w. Returns a
 * wt_stop code. */
static __always_inline __u8 own_stack(struct walk *w, struct wt_record *r, struct wt_copies *c,
				      const struct wt_process *p, __u64 fsbase)
{
	__u64 block = 0, size = 0;

	if (r->s.tid == r->s.pid) {
		w->own_lo = p->stacks.main_lo;
		w->own_hi = p->stacks.main_hi;
	} else {
		if (p->stacks.tcb_block == 0)
			return WT_STOP_NO_STACK;
		struct wt_span span = { p->stacks.tcb_block, 16 };
		copy_span(c, SPAN_TCB, fsbase, span);
		if (read_word(r, c, &block, fsbase + p->stacks.tcb_block) ||
		    read_word(r, c, &size, fsbase + p->stacks.tcb_block + 8))
			return WT_STOP_READ;
		w->own_lo = block;
		w->own_hi = block + size;
	}
	if (w->own_hi <= w->own_lo)
		return WT_STOP_NO_STACK;
	return WT_STOP_OK;
}

static __always_inline int on_own_stack(const struct walk *w, __u64 addr)
{
	return w->own_lo <= addr && addr < w->own_hi;
}

/* Steps 1 to 5 for the current thread, from its user registers regs, into
 * r->s. Every program walks through here, the perf sample and every trace
 * event alike. */
static __always_inline void walk_user(struct wt_record *r, const struct wt_process *p,
				      const struct wt_uregs *regs)
{
	struct wt_sample *s = &r->s;
	struct walk w = {};
	__u64 fsbase, slot, cts, store;
	__u64 cur_pc, cur_fp, cur_entry, base, old_entry;

	__u32 zero = 0;
	struct wt_copies *c = bpf_map_lookup_elem(&copies, &zero);

	s->user_pc = regs->ip;
	s->user_fp = regs->bp;
	s->user_sp = regs->sp;
	if (!c) {
		s->stop = WT_STOP_READ;
		return;
	}
	/* The copies are the last walk's on this CPU: forget them. */
	c->stack_len = 0;
	for (int i = 0; i < WT_SPANS; i++)
		c->span_len[i] = c->span_lo[i] = 0;
	w.l = p->layout;
	int in_wasm = in_ranges(p, regs->ip);

	/* Step 1: the innermost CallThreadState. */
	struct task_struct *task = bpf_get_current_task_btf();
	fsbase = BPF_CORE_READ(task, thread.fsbase);
	if (s->flags & WT_SAMPLE_LOGGED)
		r->log.fsbase = fsbase;
	if (!fsbase) {
		s->stop = WT_STOP_NO_FSBASE;
		return;
	}
	if (read_word(r, c, &slot, fsbase + w.l.tls_offset)) {
		s->stop = WT_STOP_READ;
		return;
	}
	cts = slot & w.l.tls_mask;
	if (cts == 0) {
		/* Compiled code running without a CTS is a transition: Wasmtime
		 * pushes the CTS before entering and pops it after leaving. */
		if (in_wasm) {
			s->where = WT_WHERE_WASM;
			s->stop = WT_STOP_TRANSITION;
		}
		return;
	}
	s->flags |= WT_SAMPLE_CTS;
	__u8 stop = own_stack(&w, r, c, p, fsbase);
	if (stop == WT_STOP_OK) {
		w.sp_own = on_own_stack(&w, regs->sp);
		if (!w.sp_own)
			s->flags |= WT_SAMPLE_ON_FIBER;
		if (on_own_stack(&w, cts) != w.sp_own && (w.sp_own || in_wasm))
			stop = WT_STOP_FIBER_SWITCH;
	}
	if (stop != WT_STOP_OK) {
		s->where = in_wasm ? WT_WHERE_WASM : WT_WHERE_HOST;
		s->stop = stop;
		return;
	}

	/* Step 2: the store's current values, and what this CTS saved. */
	/* The innermost CTS lives on the host stack above the innermost
	 * activation's frames, and the saved values near it: one copy from
	 * the sampled SP to just above the CTS holds them all, if not too
	 * far. */
	if (w.l.cts_span.len && cts > regs->sp && cts - regs->sp < WT_WINDOW_BYTES)
		copy_stack(c, regs->sp, cts + w.l.cts_span.lo + w.l.cts_span.len + WT_CTS_SLACK);
	copy_span(c, SPAN_CTS, cts, w.l.cts_span);
	if (read_word(r, c, &store, cts + w.l.cts_store)) {
		s->stop = WT_STOP_READ;
		return;
	}
	copy_span(c, SPAN_STORE, store, w.l.store_span);
	if (read_word(r, c, &cur_pc, store + w.l.store_exit_pc) ||
	    read_word(r, c, &cur_fp, store + w.l.store_exit_fp) ||
	    read_word(r, c, &cur_entry, store + w.l.store_entry) || saved_base(&w, r, c, cts, &base) ||
	    read_word(r, c, &old_entry, base + w.l.old_entry)) {
		s->stop = WT_STOP_READ;
		return;
	}
	w.store = store;
	w.cts = cts;
	int entered = cur_entry != old_entry;

	/* Step 3: the first region. */
	if (in_wasm) {
		s->where = WT_WHERE_WASM;
		if (!entered) {
			s->stop = WT_STOP_TRANSITION;
			return;
		}
		__u64 caller = caller_pc_outside_frame(r, c, p, regs->ip, regs->sp, regs->bp);
		if (start_region(&w, r, c, caller ? caller : regs->ip, regs->bp, cur_entry) == 0 && caller) {
			/* The sampled function has no frame yet (or no more): it
			 * is the leaf, and the region goes on from its caller. */
			s->pcs[0] = regs->ip;
			s->nframes = 1;
		}
	} else {
		s->where = WT_WHERE_HOST;
		if (entered && cur_pc != 0) {
			if (exit_fp(&w, r, c, cur_fp, &cur_fp)) {
				s->stop = WT_STOP_READ;
				return;
			}
			start_region(&w, r, c, cur_pc, cur_fp, cur_entry);
		}
	}

	/* Steps 4 and 5. */
	if (!w.done)
		bpf_loop(WT_MAX_STEPS, walk_step, &w, 0);
	s->stop = w.done ? w.stop : WT_STOP_TOO_DEEP;
	if (s->where == WT_WHERE_HOST && s->nframes == 0 && s->stop == WT_STOP_OK)
		s->where = WT_WHERE_NO_WASM;
}

SEC("perf_event")
int wasmtrace_sample(struct wt_perf_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	struct wt_process *p;
	struct wt_record *r;
	struct wt_uregs regs = {};

	p = bpf_map_lookup_elem(&processes, &pid);
	if (!p)
		return 0;
	__u32 zero = 0;
	struct wt_timing *t = bpf_map_lookup_elem(&timing, &zero);
	__u64 t0 = t && t->on ? bpf_ktime_get_ns() : 0;
	r = begin(p, id, WT_EVENT_SAMPLE, 1);
	if (!r)
		return 0;
	count(WT_COUNTER_SAMPLES);
	if (user_regs(ctx, &regs)) {
		r->s.stop = WT_STOP_READ;
		if (r->s.flags & WT_SAMPLE_LOGGED)
			r->log.flags |= WT_LOG_NO_REGS;
	} else {
		walk_user(r, p, &regs);
	}
	send(r, 1);
	if (t && t0) {
		__u64 b = (bpf_ktime_get_ns() - t0) / WT_TIMING_NS;
		if (b >= WT_TIMING_BUCKETS)
			b = WT_TIMING_BUCKETS - 1;
		__sync_fetch_and_add(&t->buckets[b], 1);
	}
	return 0;
}

/* ---- wasmtrace trace: events other than perf samples. ---- */

/* Read-only knobs of the trace programs (one value). Written by the
 * loader before it attaches them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_trace_config);
} trace_config SEC(".maps");

/* The rate limiter (one value, shared by every CPU). Written here only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wt_rate);
} rate SEC(".maps");

/* System call numbers traced by syscall:NAME, keyed by number. Written by
 * the loader, read by wasmtrace_syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, __u32);
	__type(value, __u32);
} syscalls SEC(".maps");

/* offcpu: the stack each traced thread left the CPU with, keyed by tid;
 * time_ns is when. Written and read here only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct wt_sample);
} offcpu SEC(".maps");

const enum wt_event *unused_event __attribute__((unused));

/* Whether one more event may be sent this second. Racy across CPUs by a
 * few events at most, which is all a limit on output needs. */
static __always_inline int rate_ok(void)
{
	__u32 zero = 0;
	struct wt_trace_config *c = bpf_map_lookup_elem(&trace_config, &zero);
	struct wt_rate *st = bpf_map_lookup_elem(&rate, &zero);

	count(WT_COUNTER_EVENTS);
	if (!c || !st || c->max_per_sec == 0)
		return 1;
	__u64 sec = bpf_ktime_get_ns() / 1000000000;
	if (st->second != sec) {
		st->second = sec;
		st->sent = 0;
	}
	if (__sync_fetch_and_add(&st->sent, 1) >= c->max_per_sec) {
		count(WT_COUNTER_DROPPED);
		return 0;
	}
	return 1;
}

/* Walks the current thread of the traced process p from its saved user
 * registers and sends the record. */
static __always_inline struct wt_record *walk_current(const struct wt_process *p, __u64 id,
						      __u16 event)
{
	struct wt_uregs regs = {};
	struct wt_record *r = begin(p, id, event, 0);

	if (!r)
		return 0;
	if (task_user_regs(&regs))
		r->s.stop = WT_STOP_READ;
	else
		walk_user(r, p, &regs);
	return r;
}

/* A trap: Wasmtime's handler is about to get the signal of a faulting
 * instruction, whose registers are the thread's saved user registers.
 * raw_tp args: int sig, struct kernel_siginfo *info, struct k_sigaction *ka. */
SEC("raw_tp/signal_deliver")
int wasmtrace_trap(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	int sig = ctx->args[0];
	struct wt_process *p;
	struct wt_record *r;

	if (sig != 4 && sig != 7 && sig != 8 && sig != 11) /* SIGILL SIGBUS SIGFPE SIGSEGV */
		return 0;
	p = bpf_map_lookup_elem(&processes, &pid);
	if (!p || !rate_ok())
		return 0;
	r = walk_current(p, id, WT_EVENT_TRAP);
	if (!r)
		return 0;
	/* kernel_siginfo: int si_signo, si_errno, si_code; then the union,
	 * whose first member for faults is void *si_addr, at 16. */
	int code = 0;
	__u64 addr = 0;
	const char *info = (const char *)ctx->args[1];
	bpf_probe_read_kernel(&code, sizeof(code), info + 8);
	bpf_probe_read_kernel(&addr, sizeof(addr), info + 16);
	r->s.args[0] = sig;
	r->s.args[1] = (__u64)(__s64)code;
	r->s.args[2] = addr;
	send(r, 0);
	return 0;
}

/* A chosen system call. raw_tp args: struct pt_regs *regs, long id. */
SEC("raw_tp/sys_enter")
int wasmtrace_syscall(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, nr = ctx->args[1];
	struct wt_process *p;
	struct wt_record *r;

	p = bpf_map_lookup_elem(&processes, &pid);
	if (!p || !bpf_map_lookup_elem(&syscalls, &nr) || !rate_ok())
		return 0;
	r = walk_current(p, id, WT_EVENT_SYSCALL);
	if (!r)
		return 0;
	const struct wt_regs *regs = (const struct wt_regs *)ctx->args[0];
	__u64 arg0 = 0, arg2 = 0;
	bpf_probe_read_kernel(&arg0, sizeof(arg0), &regs->di);
	bpf_probe_read_kernel(&arg2, sizeof(arg2), &regs->dx);
	r->s.args[0] = nr;
	r->s.args[1] = arg0;
	r->s.args[2] = arg2;
	send(r, 0);
	return 0;
}

/* Off-CPU time. raw_tp args: bool preempt, struct task_struct *prev,
 * struct task_struct *next, unsigned int prev_state; current is prev. A
 * traced thread leaving the CPU with Wasm on its stack stores its walk; when
 * it comes back, the walk is sent with the time it was away. */
SEC("raw_tp/sched_switch")
int wasmtrace_offcpu(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct wt_process *p = bpf_map_lookup_elem(&processes, &pid);

	if (p && tid != 0) {
		struct wt_record *r = walk_current(p, id, WT_EVENT_OFFCPU);
		/* A walk that failed is kept too, whatever it saw: its block is
		 * then shown and counted as an unwind failure, never missing. */
		if (r && (r->s.where != WT_WHERE_NO_WASM || r->s.stop != WT_STOP_OK) &&
		    bpf_map_update_elem(&offcpu, &tid, &r->s, BPF_ANY))
			count(WT_COUNTER_LOST);
	}

	struct task_struct *next = (struct task_struct *)ctx->args[2];
	__u32 next_tid = BPF_CORE_READ(next, pid);
	struct wt_sample *s = bpf_map_lookup_elem(&offcpu, &next_tid);
	if (!s)
		return 0;
	__u64 now = bpf_ktime_get_ns(), n;
	__u32 zero = 0;
	struct wt_trace_config *c = bpf_map_lookup_elem(&trace_config, &zero);
	if (c && now - s->time_ns >= c->min_block_ns && rate_ok()) {
		s->args[0] = now - s->time_ns;
		s->time_ns = now;
		s->cpu = bpf_get_smp_processor_id();
		n = s->nframes;
		if (n > WT_MAX_FRAMES)
			n = WT_MAX_FRAMES;
		if (bpf_ringbuf_output(&samples, s, __builtin_offsetof(struct wt_sample, pcs) + n * sizeof(__u64), 0))
			count(WT_COUNTER_LOST);
	}
	bpf_map_delete_elem(&offcpu, &next_tid);
	return 0;
}

/* The syscalls tracepoints' records (tracefs events/syscalls/.../format):
 * after the common header, the syscall number, then its arguments or its
 * return value. */
struct wt_sys_enter {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct wt_sys_exit {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

#define WT_PROT_EXEC 0x4

/* A process's first entry, too big for the BPF stack. */
const struct wt_recent empty_recent = {};

/* Sends a stackless record of event e with arguments a0..a2. */
static __always_inline void send_note(__u64 id, __u16 e, __u64 a0, __u64 a1, __u64 a2)
{
	__u32 zero = 0;
	struct wt_record *r = bpf_map_lookup_elem(&scratch, &zero);

	if (!r)
		return;
	__builtin_memset(&r->s, 0, __builtin_offsetof(struct wt_sample, pcs));
	r->s.event = e;
	r->s.time_ns = bpf_ktime_get_ns();
	r->s.pid = id >> 32;
	r->s.tid = (__u32)id;
	r->s.cpu = bpf_get_smp_processor_id();
	r->s.args[0] = a0;
	r->s.args[1] = a1;
	r->s.args[2] = a2;
	/* Woken at once, whatever samples wait unread: the note must be
	 * applied while the code it names is still there to be read. */
	if (bpf_ringbuf_output(&samples, r, __builtin_offsetof(struct wt_sample, pcs), BPF_RB_FORCE_WAKEUP))
		count(WT_COUNTER_LOST);
}

/* A traced process made code executable: Wasmtime publishes a module's
 * code with mprotect(PROT_READ | PROT_EXEC) once written, in process or
 * from a .cwasm file. From here on walks take it for Wasm code (the loader
 * names it when the record arrives). Only mprotect runs this: nothing is
 * added to the cost of samples or of other system calls. */
SEC("tracepoint/syscalls/sys_exit_mprotect")
int wasmtrace_code(struct wt_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;

	if (ctx->ret != 0 || !bpf_map_lookup_elem(&processes, &pid))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	const struct wt_regs *regs = (const struct wt_regs *)bpf_task_pt_regs(task);
	__u64 start = 0, len = 0, prot = 0;
	if (!regs || bpf_probe_read_kernel(&start, sizeof(start), &regs->di) ||
	    bpf_probe_read_kernel(&len, sizeof(len), &regs->si) ||
	    bpf_probe_read_kernel(&prot, sizeof(prot), &regs->dx) || !(prot & WT_PROT_EXEC) || len == 0)
		return 0;

	struct wt_recent *rc = bpf_map_lookup_elem(&recent_code, &pid);
	if (!rc) {
		bpf_map_update_elem(&recent_code, &pid, (const void *)&empty_recent, BPF_NOEXIST);
		rc = bpf_map_lookup_elem(&recent_code, &pid);
	}
	__u64 slot = 0, seq = 0;
	if (rc) {
		/* Two threads publishing at once may take the same slot: one
		 * entry is lost, and its code waits for the loader's ranges. */
		__u32 i = rc->next % WT_RECENT;
		rc->next = i + 1;
		seq = rc->count++;
		rc->hi[i] = 0;
		rc->seq[i] = seq;
		rc->lo[i] = start;
		rc->hi[i] = start + len;
		rc->newest_ns = bpf_ktime_get_ns();
		slot = i;
	}
	/* The slot and seq let the loader ask later whether this code is still
	 * mapped (its entry's hi is zeroed by the munmap that frees it). */
	send_note(id, WT_EVENT_CODE, start, len, (prot & 0xff) | slot << 8 | seq << 16);
	return 0;
}

/* A traced process unmaps memory: recent code in it is gone. */
SEC("tracepoint/syscalls/sys_enter_munmap")
int wasmtrace_unmap(struct wt_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;

	if (!bpf_map_lookup_elem(&processes, &pid))
		return 0;
	__u64 start = ctx->args[0], end = ctx->args[0] + ctx->args[1];
	struct wt_recent *rc = bpf_map_lookup_elem(&recent_code, &pid);
	if (rc) {
		for (int i = 0; i < WT_RECENT; i++) {
			if (rc->lo[i] < end && start < rc->hi[i])
				rc->hi[i] = 0;
		}
	}
	send_note(id, WT_EVENT_UNMAP, start, ctx->args[1], 0);
	return 0;
}

/* uprobe:BINARY:SYMBOL: host code, so the walk starts from the store's exit
 * records. The cookie is the probe's index. */
SEC("uprobe")
int wasmtrace_uprobe(struct wt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	struct wt_process *p = bpf_map_lookup_elem(&processes, &pid);
	struct wt_record *r;
	struct wt_uregs regs = {};

	if (!p || !rate_ok())
		return 0;
	r = begin(p, id, WT_EVENT_UPROBE, 0);
	if (!r)
		return 0;
	regs.ip = ctx->ip;
	regs.bp = ctx->bp;
	regs.sp = ctx->sp;
	walk_user(r, p, &regs);
	r->s.args[0] = bpf_get_attach_cookie(ctx);
	send(r, 0);
	return 0;
}
