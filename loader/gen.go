package loader

// The kernel walker is compiled by bpf2go into wasmtrace_x86_bpfel.{go,o},
// which are committed so that building wasmtrace needs no clang. `make
// generate` reruns this with the pinned compiler; CI checks the result is
// identical to what is committed.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror" -target amd64 -type wt_sample -type wt_process -type wt_layout -type wt_range -type wt_stop -type wt_where -type wt_bound_kind -type wt_counter -type wt_limit -type wt_sample_flag -type wt_log_flag -type wt_read -type wt_readlog -type wt_record -type wt_event -type wt_trace_config -type wt_rate -type wt_span -type wt_timing -type wt_stacks wasmtrace ../bpf/wasmtrace.c -- -I../bpf -I/usr/include/x86_64-linux-gnu
