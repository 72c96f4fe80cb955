//go:build ignore

/* wasmtrace's kernel walker: on each perf sample of a traced process, find
 * the Wasm frames on the sampled thread's stack the way Wasmtime's own
 * backtrace does (crates/wasmtime/src/runtime/vm/traphandlers/backtrace.rs),
 * and send their PCs to userspace. walker/walker.go is the same algorithm in
 * Go, step for step; keep the two in sync.
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
 * The algorithm:
 *  1. Find the thread's innermost CallThreadState (CTS) through the
 *     thread-local slot at fsbase + tls_offset. None: no Wasm on the stack.
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
 *     bound must lie above the newer one.
 * Every failed check ends the walk with its wt_stop code; the frames found so
 * far are still sent, flagged by that code, and userspace decides.
 *
 * Verification (wasmtrace record --verify): for a configurable fraction of
 * samples, every user-memory read above is logged, in order, with its
 * address, size, result and bytes (struct wt_readlog), and sent after the
 * sample. Userspace replays the walk over exactly those bytes with the Go
 * walker and compares. Unlogged samples pay one flag test per read.
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
} __attribute__((preserve_access_index));

struct walk {
	struct wt_layout l;
	__u64 pc, fp, bound;  /* the region being walked */
	__u64 prev_bound;     /* bound of the newer activation, 0 before the first */
	__u64 cts;            /* next CTS to consult for an older region */
	__u64 store;          /* the sampled store: other stores' CTSs are skipped */
	__u32 in_region;
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

static __always_inline int read_word(struct wt_record *r, __u64 *dst, __u64 addr)
{
	return read_user(r, dst, sizeof(*dst), addr) != 0;
}

/* Binary search of the process's sorted compiled-code ranges. */
static __always_inline int in_ranges(const struct wt_process *p, __u64 pc)
{
	__u32 lo = 0, hi = p->nranges;

	if (hi > WT_MAX_RANGES)
		hi = WT_MAX_RANGES;
	for (int i = 0; i < WT_RANGE_SEARCH_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = (lo + hi) / 2;
		const struct wt_range *r = &p->ranges[mid & (WT_MAX_RANGES - 1)];
		if (pc < r->start)
			hi = mid;
		else if (pc >= r->end)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static __always_inline long finish(struct walk *w, __u8 stop)
{
	w->stop = stop;
	w->done = 1;
	return 1; /* ends bpf_loop */
}

/* The last Wasm FP of an activation, from its saved exit FP field: newer
 * builds save the exit trampoline's FP, whose record holds the Wasm FP. */
static __always_inline int exit_fp(struct walk *w, struct wt_record *r, __u64 field, __u64 *fp)
{
	*fp = field;
	if (w->l.exit_fp_indirect && field != 0)
		return read_word(r, fp, field);
	return 0;
}

/* Step 3/5: begin walking a region from its exit PC, last Wasm FP and raw
 * entry field. Returns 1 when the walk is over. */
static __always_inline long start_region(struct walk *w, struct wt_record *r, __u64 pc,
					 __u64 fp, __u64 entry)
{
	struct wt_sample *s = &r->s;
	__u64 bound;

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
	if (bound <= w->prev_bound)
		return finish(w, WT_STOP_ACT_ORDER);
	if (s->nact >= WT_MAX_ACTIVATIONS)
		return finish(w, WT_STOP_TOO_DEEP);
	s->act_start[s->nact & (WT_MAX_ACTIVATIONS - 1)] = s->nframes;
	s->nact++;
	w->pc = pc;
	w->fp = fp;
	w->bound = bound;
	w->prev_bound = bound;
	w->in_region = 1;
	return 0;
}

/* Where a CTS keeps what the store held before its activation began. */
static __always_inline int saved_base(struct walk *w, struct wt_record *r, __u64 cts, __u64 *base)
{
	if (!w->l.cts_old_indirect) {
		*base = cts;
		return 0;
	}
	return read_word(r, base, cts + w->l.cts_old);
}

/* Step 5: the next older region, from the next CTS of the same store. */
static __always_inline long next_region(struct walk *w, struct wt_record *r)
{
	__u64 cts = w->cts, store, prev, base, pc, fp, entry;

	if (cts == 0)
		return finish(w, WT_STOP_OK);
	if (read_word(r, &store, cts + w->l.cts_store) || read_word(r, &prev, cts + w->l.cts_prev))
		return finish(w, WT_STOP_READ);
	w->cts = prev;
	if (store != w->store)
		return 0; /* another store's activation: opaque host code to us */
	if (saved_base(w, r, cts, &base) || read_word(r, &pc, base + w->l.old_exit_pc) ||
	    read_word(r, &fp, base + w->l.old_exit_fp) || read_word(r, &entry, base + w->l.old_entry) ||
	    (pc != 0 && exit_fp(w, r, fp, &fp)))
		return finish(w, WT_STOP_READ);
	return start_region(w, r, pc, fp, entry);
}

/* Step 4: one frame of the current region (or a move to the next region). */
static long walk_step(__u32 i, void *ctx)
{
	struct walk *w = ctx;
	__u32 zero = 0;
	struct wt_record *r = bpf_map_lookup_elem(&scratch, &zero);
	__u64 fp = w->fp, ra, older;

	if (!r)
		return finish(w, WT_STOP_READ);
	struct wt_sample *s = &r->s;
	if (!w->in_region)
		return next_region(w, r);
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
	if (read_word(r, &ra, fp + w->l.ra_offset) || read_word(r, &older, fp + w->l.fp_offset))
		return finish(w, WT_STOP_READ);
	if (older <= fp)
		return finish(w, WT_STOP_FP_ORDER);
	w->pc = ra;
	w->fp = older;
	return 0;
}

/* The sampled thread's user registers: in the perf context when the sample
 * hit user mode, otherwise (a system call, a fault) saved on kernel entry. */
static __always_inline int user_regs(struct wt_perf_ctx *ctx, struct wt_regs *r)
{
	if (ctx->regs.cs & 3) {
		r->ip = ctx->regs.ip;
		r->bp = ctx->regs.bp;
		r->sp = ctx->regs.sp;
		return 0;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	long regs = bpf_task_pt_regs(task);
	if (!regs)
		return -1;
	return bpf_probe_read_kernel(r, sizeof(*r), (const void *)regs);
}

/* x86-64, step 3: a Cranelift function sets up its frame with
 * push %rbp (55); mov %rsp,%rbp (48 89 e5) and leaves it with pop %rbp; ret
 * (c3). Sampled on one of those instructions, rbp is still the caller's
 * frame, and the caller's PC is on top of the stack ([sp] before the push
 * and at the ret, [sp+8] after the push). Returns that PC, or 0 when rbp is
 * the sampled function's own frame. */
static __always_inline __u64 caller_pc_outside_frame(struct wt_record *r, __u64 ip, __u64 sp)
{
	__u8 code[3] = {};
	__u64 ra = 0;

	if (read_user(r, code, 1, ip))
		return 0;
	if (code[0] == 0x55 || code[0] == 0xc3) {
		read_word(r, &ra, sp);
		return ra;
	}
	if (code[0] == 0x48 && !read_user(r, code, 3, ip) && code[1] == 0x89 && code[2] == 0xe5) {
		read_word(r, &ra, sp + 8);
		return ra;
	}
	return 0;
}

static __always_inline void send(struct wt_record *r)
{
	__u64 n, size;

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
	if (bpf_ringbuf_output(&samples, r, size, 0))
		count(WT_COUNTER_LOST);
}

SEC("perf_event")
int wasmtrace_sample(struct wt_perf_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, zero = 0;
	struct wt_process *p;
	struct wt_record *r;
	struct wt_sample *s;
	struct wt_regs regs = {};
	struct walk w = {};
	__u64 fsbase, slot, cts, store;
	__u64 cur_pc, cur_fp, cur_entry, base, old_entry;

	p = bpf_map_lookup_elem(&processes, &pid);
	if (!p)
		return 0;
	r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return 0;
	s = &r->s;
	count(WT_COUNTER_SAMPLES);

	__builtin_memset(s, 0, __builtin_offsetof(struct wt_sample, pcs));
	/* Verification: this sample logs its reads (read_user) when chosen. */
	if (p->verify_below && (__u64)bpf_get_prandom_u32() < p->verify_below) {
		s->flags = WT_SAMPLE_LOGGED;
		r->log.fsbase = 0;
		r->log.gen = p->gen;
		r->log.flags = 0;
		r->log.nreads = 0;
	}
	s->time_ns = bpf_ktime_get_ns();
	s->pid = pid;
	s->tid = (__u32)id;
	s->cpu = bpf_get_smp_processor_id();
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	if (user_regs(ctx, &regs)) {
		s->stop = WT_STOP_READ;
		if (s->flags & WT_SAMPLE_LOGGED)
			r->log.flags |= WT_LOG_NO_REGS;
		goto out;
	}
	s->user_pc = regs.ip;
	s->user_fp = regs.bp;
	s->user_sp = regs.sp;
	w.l = p->layout;
	int in_wasm = in_ranges(p, regs.ip);

	/* Step 1: the innermost CallThreadState. */
	struct task_struct *task = bpf_get_current_task_btf();
	fsbase = BPF_CORE_READ(task, thread.fsbase);
	if (s->flags & WT_SAMPLE_LOGGED)
		r->log.fsbase = fsbase;
	if (!fsbase) {
		s->stop = WT_STOP_NO_FSBASE;
		goto out;
	}
	if (read_word(r, &slot, fsbase + w.l.tls_offset)) {
		s->stop = WT_STOP_READ;
		goto out;
	}
	cts = slot & w.l.tls_mask;
	if (cts == 0) {
		/* Compiled code running without a CTS is a transition: Wasmtime
		 * pushes the CTS before entering and pops it after leaving. */
		if (in_wasm) {
			s->where = WT_WHERE_WASM;
			s->stop = WT_STOP_TRANSITION;
		}
		goto out;
	}

	/* Step 2: the store's current values, and what this CTS saved. */
	if (read_word(r, &store, cts + w.l.cts_store) ||
	    read_word(r, &cur_pc, store + w.l.store_exit_pc) ||
	    read_word(r, &cur_fp, store + w.l.store_exit_fp) ||
	    read_word(r, &cur_entry, store + w.l.store_entry) || saved_base(&w, r, cts, &base) ||
	    read_word(r, &old_entry, base + w.l.old_entry)) {
		s->stop = WT_STOP_READ;
		goto out;
	}
	w.store = store;
	w.cts = cts;
	int entered = cur_entry != old_entry;

	/* Step 3: the first region. */
	if (in_wasm) {
		s->where = WT_WHERE_WASM;
		if (!entered) {
			s->stop = WT_STOP_TRANSITION;
			goto out;
		}
		__u64 caller = caller_pc_outside_frame(r, regs.ip, regs.sp);
		if (start_region(&w, r, caller ? caller : regs.ip, regs.bp, cur_entry) == 0 && caller) {
			/* The sampled function has no frame yet (or no more): it
			 * is the leaf, and the region goes on from its caller. */
			s->pcs[0] = regs.ip;
			s->nframes = 1;
		}
	} else {
		s->where = WT_WHERE_HOST;
		if (entered && cur_pc != 0) {
			if (exit_fp(&w, r, cur_fp, &cur_fp)) {
				s->stop = WT_STOP_READ;
				goto out;
			}
			start_region(&w, r, cur_pc, cur_fp, cur_entry);
		}
	}

	/* Steps 4 and 5. */
	if (!w.done)
		bpf_loop(WT_MAX_STEPS, walk_step, &w, 0);
	s->stop = w.done ? w.stop : WT_STOP_TOO_DEEP;
	if (s->where == WT_WHERE_HOST && s->nframes == 0 && s->stop == WT_STOP_OK)
		s->where = WT_WHERE_NO_WASM;
out:
	send(r);
	return 0;
}
