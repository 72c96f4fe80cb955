/* Types shared by the kernel walker (wasmtrace.c) and the Go loader.
 *
 * bpf2go generates the Go mirrors of these structs (loader/wasmtrace_x86_bpfel.go);
 * loader/layout_test.go checks that the Go code agrees with them. Change them
 * here only.
 */
#ifndef WASMTRACE_H
#define WASMTRACE_H

#include <linux/types.h>

/* Deepest stack one sample carries: 100-deep recursion plus nesting. */
#define WT_MAX_FRAMES 256
/* Most nested host->Wasm activations one sample carries. */
#define WT_MAX_ACTIVATIONS 32
/* Compiled-code ranges (one per module's .text) of all traced processes,
 * in one array (the code_ranges map): each process's ranges are a sorted
 * run of it, and the loader writes a new run before it switches a process
 * to it, so a walk never sees a run half written. Room for a process with
 * 100,000 modules while its next run is being written, and others. */
#define WT_RANGE_SLOTS (1 << 19)
/* Code published since the loader last wrote a process's ranges, kept by
 * the kernel per process (struct wt_recent) so that a module is known from
 * the moment it becomes executable; slots are reused in turn. */
#define WT_RECENT 32
/* Binary-search steps that cover a run of WT_RANGE_SLOTS: log2 + 1. */
#define WT_RANGE_SEARCH_STEPS 20
/* CallThreadState records followed per sample (other stores' included). */
#define WT_MAX_CTS 64
/* Steps of the walk's loop: one frame, one region end or one CTS each. */
#define WT_MAX_STEPS (WT_MAX_FRAMES + WT_MAX_CTS + WT_MAX_ACTIVATIONS)
/* User-memory reads one verified sample logs. A walk of the newer
 * generation reads at most 13 + 2 * WT_MAX_STEPS + 7 * WT_MAX_ACTIVATIONS
 * = 941 times; only a seed walk through many empty regions could read
 * more, and its log is then marked WT_LOG_OVERFLOW. (The per-CPU scratch
 * value, a sample and this log, must stay under the kernel's 32 KiB.) */
#define WT_MAX_READS 1024
/* Bytes of one activation's Wasm frames copied in one read (struct
 * wt_copies); frames above that are read word by word. 256 frames of
 * 64 bytes fit. */
#define WT_WINDOW_BYTES 16384
/* Bytes of one Wasmtime record (CTS, saved values, store) copied in one
 * read; a layout whose fields lie farther apart reads them one by one. */
#define WT_SPAN_BYTES 256
/* Bytes above its CTS copied with the innermost activation's stack: where
 * the saved values (EntryStoreContext) lie, 192 bytes above it in Wasmtime
 * 39 (and below it in 37). */
#define WT_CTS_SLACK 128
/* The program's own time on samples of traced processes, as a histogram
 * (struct wt_timing), kept only while a benchmark turns it on: the kernel's
 * BPF statistics give only a mean, which a few runs preempted by the
 * hypervisor can double. Buckets are WT_TIMING_NS wide; the last one holds
 * everything longer. */
#define WT_TIMING_BUCKETS 256
#define WT_TIMING_NS 50

/* The limits above as an enum, so that they reach Go through BTF and a
 * test can hold the Go walker to them. */
enum wt_limit {
	WT_LIMIT_FRAMES = WT_MAX_FRAMES,
	WT_LIMIT_ACTIVATIONS = WT_MAX_ACTIVATIONS,
	WT_LIMIT_RANGE_SLOTS = WT_RANGE_SLOTS,
	WT_LIMIT_RECENT = WT_RECENT,
	WT_LIMIT_CTS = WT_MAX_CTS,
	WT_LIMIT_STEPS = WT_MAX_STEPS,
	WT_LIMIT_READS = WT_MAX_READS,
	WT_LIMIT_WINDOW_BYTES = WT_WINDOW_BYTES,
	WT_LIMIT_SPAN_BYTES = WT_SPAN_BYTES,
	WT_LIMIT_TIMING_BUCKETS = WT_TIMING_BUCKETS,
	WT_LIMIT_TIMING_NS = WT_TIMING_NS,
};

/* Where the sampled thread was. */
enum wt_where {
	WT_WHERE_NO_WASM = 0, /* no Wasm activation of the sampled store on the stack */
	WT_WHERE_WASM = 1,    /* the sampled PC is in compiled Wasm code */
	WT_WHERE_HOST = 2,    /* host code, called (directly or not) from Wasm */
};

/* Why a walk ended. WT_STOP_OK is the only complete walk; every other code
 * names the check that failed, and the sample keeps the frames walked
 * before it. The Go walker returns the same codes (walker.Stop). */
enum wt_stop {
	WT_STOP_OK = 0,
	WT_STOP_READ = 1,          /* user memory could not be read */
	WT_STOP_FP_ALIGN = 2,      /* a frame pointer is misaligned */
	WT_STOP_FP_ORDER = 3,      /* the older FP is not above the current one */
	WT_STOP_FP_BOUND = 4,      /* FP is not below the region's entry bound */
	WT_STOP_PC_ZERO = 5,       /* a region starts with PC 0 but non-zero FP */
	WT_STOP_ACT_ORDER = 6,     /* an older activation is not above the newer one */
	WT_STOP_TRANSITION = 7,    /* sampled while entering Wasm: the bound is not set yet */
	WT_STOP_TOO_DEEP = 8,      /* more frames, activations or CallThreadStates than
	                              the walker's limits (WT_MAX_*) */
	WT_STOP_ENTRY_ALIGN = 9,   /* the seed's entry SP alignment check failed */
	WT_STOP_NO_FSBASE = 10,    /* thread pointer unknown */
	WT_STOP_FIBER_SWITCH = 11, /* the thread's Wasmtime state names a stack other
	                              than the one it runs on: it is switching fibers */
	WT_STOP_NO_STACK = 12,     /* the bounds of the thread's own stack are unknown */
	WT_STOP__COUNT = 13,
};

/* How a layout bounds a region of contiguous Wasm frames. */
enum wt_bound_kind {
	/* Newer Wasmtime: the entry trampoline records its own FP; the region
	 * ends, before that frame, when fp == entry_fp. */
	WT_BOUND_ENTRY_FP = 1,
	/* Seed generation: the entry trampoline records the SP it calls Wasm
	 * with; the region ends at fp == entry_sp - seed_gap (the trampoline's
	 * own frame, which Wasmtime drops at symbolization and so do we). */
	WT_BOUND_ENTRY_SP = 2,
};

struct wt_span {
	__u32 lo, len;
};

/* Where one build of Wasmtime keeps a thread's Wasm bookkeeping. Offsets are
 * byte offsets; all come from layout/ (discovered in the binary, then
 * verified). "CTS" is CallThreadState, "store" is VMStoreContext (named
 * VMRuntimeLimits in the seed). */
struct wt_layout {
	__u32 bound_kind;        /* enum wt_bound_kind */
	__u32 exit_fp_indirect;  /* 1: the exit field is the exit trampoline's FP; the
	                            last Wasm FP is the word it points to */
	__s64 tls_offset;        /* slot address = thread pointer + tls_offset */
	__u64 tls_mask;          /* applied to the slot's word (tag bit 0 in newer builds) */

	__u32 cts_store;         /* CTS -> *store of this activation */
	__u32 cts_prev;          /* CTS -> *CTS of the enclosing call, or 0 */
	__u32 cts_old_indirect;  /* 1: saved values are behind the pointer at cts_old
	                            (EntryStoreContext); 0: saved values are inline in CTS */
	__u32 cts_old;           /* offset of that pointer (if indirect) */

	__u32 old_exit_pc;       /* saved exit PC, relative to the saved-values base */
	__u32 old_exit_fp;       /* saved exit FP (or exit trampoline FP) */
	__u32 old_entry;         /* saved entry FP (or entry SP) */
	__u32 old_limit_known;   /* 1: the saved values hold the stack limit before the
	                            activation, an Option<usize>: */
	__u32 old_limit_tag;     /* its tag word (1: Some) */
	__u32 old_limit_value;   /* its value; Some(usize::MAX): the activation was the
	                            oldest of its store on its stack */
	__u32 store_exit_pc;     /* store -> last Wasm exit PC */
	__u32 store_exit_fp;     /* store -> last Wasm exit FP (or exit trampoline FP) */
	__u32 store_entry;       /* store -> last Wasm entry FP (or entry SP) */

	/* Architecture constants (from arch/). */
	__u32 ra_offset;         /* return address, relative to FP */
	__u32 fp_offset;         /* caller's FP, relative to FP */
	__u64 fp_align;          /* frame pointers are multiples of this */
	__u64 seed_gap;          /* WT_BOUND_ENTRY_SP: stop at entry_sp - seed_gap */
	__u64 seed_sp_align;     /* WT_BOUND_ENTRY_SP: entry_sp % align == rem */
	__u64 seed_sp_rem;

	/* The bytes of each record the walk reads, [lo, lo + len) from the
	 * record's address, copied in one read (struct wt_copies); len 0:
	 * no copy (the fields lie more than WT_SPAN_BYTES apart, or, for the
	 * saved values kept inline in the CTS, the CTS span holds them). */
	struct wt_span cts_span;
	struct wt_span saved_span;
	struct wt_span store_span;
};

struct wt_range {
	__u64 start, end; /* [start, end) */
};

/* Where a process's threads keep their own stacks (as opposed to the fiber
 * stacks async Wasmtime runs Wasm on). The main thread's is [main_lo,
 * main_hi): its [stack] mapping and the room it may grow into. Any other
 * thread's is the block glibc allocated it, whose start and size glibc's
 * struct pthread, at the thread pointer, keeps at tcb_block and
 * tcb_block + 8 (0: unknown). */
struct wt_stacks {
	__u64 main_lo, main_hi;
	__u32 tcb_block;
	__u32 _pad;
};

/* Per-process configuration, keyed by tgid. Written by the loader when it
 * attaches to a process and whenever the set of compiled modules changes;
 * read by the perf-event program on every sample of that process. */
struct wt_process {
	struct wt_layout layout;
	struct wt_stacks stacks;
	__u32 ranges_off;        /* the process's compiled-code ranges: code_ranges */
	__u32 nranges;           /* [ranges_off, ranges_off + nranges), sorted, disjoint */
	__u32 gen;               /* changes with every update; logged with verified samples */
	__u32 pid;               /* the key: which struct wt_recent is this process's */
	__u64 covered_ns;        /* the ranges hold all code published (WT_EVENT_CODE)
	                            up to this time: older recent entries are in them */
	__u64 verify_below;      /* log the reads of a sample when a 32-bit random number
	                            is below this: 0 never, 1 << 32 always */
};

/* One sample, sent through the ring buffer. Only the first nframes PCs are
 * sent. act_start[i] is the index in pcs of the first (innermost) frame of
 * activation i; activation 0 is the innermost. */
struct wt_sample {
	__u64 time_ns;    /* bpf_ktime_get_ns */
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	__u8 where;       /* enum wt_where */
	__u8 stop;        /* enum wt_stop */
	__u8 nact;
	__u8 flags;       /* enum wt_sample_flag */
	__u16 nframes;
	__u16 event;      /* enum wt_event: what made this walk */
	__u32 fiber_acts; /* bit i: activation i runs on a fiber stack, not on the
	                     thread's own stack */
	__u32 stack_ends; /* bit i: activation i is the oldest of its store on its
	                     stack; the next older one is on another stack */
	__u32 _pad2;
	__u64 user_pc;    /* the thread's user registers when sampled */
	__u64 user_fp;
	__u64 user_sp;
	__u64 args[3];    /* the event's arguments (enum wt_event), else 0 */
	char comm[16];
	__u16 act_start[WT_MAX_ACTIVATIONS];
	__u64 pcs[WT_MAX_FRAMES]; /* innermost first; pcs[0] is exact when where == WT_WHERE_WASM,
	                             every other entry is a return address */
};

/* What made a walk, and its arguments (wt_sample.args). */
enum wt_event {
	WT_EVENT_SAMPLE = 0,  /* a perf sample (record): no arguments */
	WT_EVENT_TRAP = 1,    /* signal_deliver of SIGSEGV/SIGILL/SIGFPE/SIGBUS:
	                         signal, si_code, si_addr */
	WT_EVENT_SYSCALL = 2, /* sys_enter of a chosen system call: number, arg0, arg2 */
	WT_EVENT_OFFCPU = 3,  /* a thread back on CPU: ns blocked; the stack is the one
	                         it left the CPU with */
	WT_EVENT_UPROBE = 4,  /* a uprobe: its cookie (the probe's index) */
	WT_EVENT_CODE = 5,    /* code became executable (mprotect with PROT_EXEC
	                         returned 0): start, length, and the protection
	                         (bits 0-7), wt_recent slot (8-15) and seq (16-63);
	                         no stack */
	WT_EVENT_UNMAP = 6,   /* munmap entered: start, length; no stack */
};

/* Code a traced process made executable since the loader last wrote its
 * ranges, by the kernel alone (wasmtrace_code, wasmtrace_unmap); walks
 * treat a PC in [lo, hi) of an entry newer than wt_process.covered_ns as
 * compiled Wasm. An entry is freed by setting hi to 0 first. */
struct wt_recent {
	__u64 newest_ns; /* when the newest entry was added */
	__u32 next;      /* the next slot to use, modulo WT_RECENT */
	__u32 _pad;
	__u64 count;     /* code published so far: the next entry's seq */
	__u64 lo[WT_RECENT];
	__u64 hi[WT_RECENT];
	__u64 seq[WT_RECENT]; /* which publication the entry is, from count */
};

/* Knobs of `wasmtrace trace`, one value. Written by the loader before
 * attaching, read by the event programs. */
struct wt_trace_config {
	__u64 max_per_sec;  /* events sent per second at most (0: unlimited); the rest
	                       are counted in WT_COUNTER_DROPPED */
	__u64 min_block_ns; /* offcpu: shortest blocked time sent */
};

/* The rate limiter's state: events sent in the current second. */
struct wt_rate {
	__u64 second;
	__u64 sent;
};

enum wt_sample_flag {
	/* The sample is verified: it is sent whole (all WT_MAX_FRAMES pcs),
	 * followed by a struct wt_readlog of which nreads entries are sent. */
	WT_SAMPLE_LOGGED = 1,
	/* The sampled SP is not on the thread's own stack (a fiber's, or an
	 * alternate signal stack). */
	WT_SAMPLE_ON_FIBER = 2,
	/* The thread's thread-local slot held a CallThreadState: Wasmtime had
	 * entered Wasm on it (a sample whose PC is in no known code is then in
	 * code wasmtrace has not seen yet, not in the host). */
	WT_SAMPLE_CTS = 4,
};

/* One user-memory read of the walk, logged for verification. */
struct wt_read {
	__u64 addr;
	__u64 value;      /* the bytes read, little-endian in the low bytes; 0 if it failed */
	__u32 size;       /* 8 for a word, 1 or 3 for the prologue check's code bytes */
	__s32 err;        /* 0, or bpf_probe_read_user's negative errno */
};

enum wt_log_flag {
	WT_LOG_OVERFLOW = 1, /* the walk read more than WT_MAX_READS times */
	WT_LOG_NO_REGS = 2,  /* the user registers could not be read: no walk */
	WT_LOG_COPY_MISMATCH = 4, /* a word the walk took from its copy of user
	                             memory differed from a direct read of it */
};

/* What a verified sample's walk read, in order: with the sampled registers,
 * everything a replay of the walk needs. */
struct wt_readlog {
	__u64 fsbase;     /* thread pointer of the sampled thread (0: unknown) */
	__u32 gen;        /* wt_process.gen of the configuration the walk used */
	__u32 flags;      /* enum wt_log_flag */
	__u32 nreads;
	__u32 _pad;
	struct wt_read reads[WT_MAX_READS];
};

/* The per-CPU scratch value: a sample under construction and, for a
 * verified sample, the log of its reads. A plain sample is sent as the
 * first offsetof(pcs) + 8 * nframes bytes of s, so verification costs it
 * nothing in the ring buffer. */
struct wt_record {
	struct wt_sample s;
	struct wt_readlog log;
};

/* Kernel-side counters, an array indexed by these. */
enum wt_counter {
	WT_COUNTER_SAMPLES = 0,    /* perf events of target processes */
	WT_COUNTER_LOST = 1,       /* ring buffer full: sample dropped */
	WT_COUNTER_DROPPED = 2,    /* trace events over wt_trace_config.max_per_sec */
	WT_COUNTER_EVENTS = 3,     /* trace events of target processes (before the limit) */
	WT_COUNTER__COUNT = 4,
};


struct wt_timing {
	__u32 on;   /* written by whoever measures; 0: the program only tests it */
	__u32 _pad;
	__u64 buckets[WT_TIMING_BUCKETS];
};

#endif
