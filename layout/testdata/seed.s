# A synthetic "Wasmtime" of the seed generation, for layout's tests (see
# entryfp.s). Offsets unlike any real build:
#
#   CallThreadState:  limits 0x40, prev 0x38, old exit fp 0x68,
#                     old exit pc 0x70, old entry sp 0x78
#   VMRuntimeLimits:  exit fp 0x08, exit pc 0x10, entry sp 0x30
#   thread-local slot: fs-0x20 (its address is returned; no tag)

	.text
	.globl _start
	.type _start,@function
_start:
	hlt
	.size _start, .-_start

# Backtrace::new_with_trap_state(rdi = innermost CallThreadState); calls
# trace_through_wasm(pc, fp, entry sp).
	.globl _ZN16wasmtime_runtime12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE
	.type _ZN16wasmtime_runtime12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE,@function
_ZN16wasmtime_runtime12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE:
	push %r12
	push %rbx
	mov %rdi,%r12
	mov 0x40(%r12),%rax
	mov 0x10(%rax),%rdi
	mov 0x8(%rax),%rsi
	mov 0x30(%rax),%rdx
	call .Ltrace_through_wasm
1:
	mov 0x38(%r12),%rbx
	test %rbx,%rbx
	je 2f
	mov 0x70(%r12),%rdi
	mov 0x68(%r12),%rsi
	mov 0x78(%r12),%rdx
	call .Ltrace_through_wasm
	mov %rbx,%r12
	jmp 1b
2:
	pop %rbx
	pop %r12
	ret
.Ltrace_through_wasm:
	ret
	.size _ZN16wasmtime_runtime12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE, .-_ZN16wasmtime_runtime12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE

# tls::raw::PTR::__getit: returns the slot's address.
	.globl _ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit17h0123456789abcdefE
	.type _ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit17h0123456789abcdefE,@function
_ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit17h0123456789abcdefE:
	mov %fs:0,%rax
	lea -0x20(%rax),%rax
	ret
	.size _ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit17h0123456789abcdefE, .-_ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit17h0123456789abcdefE

# The assembly trampolines (rsi = VMContext; its +8 holds VMRuntimeLimits*).
	.globl wasm_to_host_trampoline
	.type wasm_to_host_trampoline,@function
wasm_to_host_trampoline:
	mov 0x8(%rsi),%r10
	mov %rbp,0x8(%r10)
	mov (%rsp),%r11
	mov %r11,0x10(%r10)
	jmp *0x8(%rdi)
	.size wasm_to_host_trampoline, .-wasm_to_host_trampoline

	.globl host_to_wasm_trampoline
	.type host_to_wasm_trampoline,@function
host_to_wasm_trampoline:
	mov 0x8(%rsi),%r10
	mov $-1,%r11
	cmpl $0x65726f63,(%rdi)
	cmove %rsp,%r11
	mov %r11,0x30(%r10)
	jmp *0x10(%rsi)
	.size host_to_wasm_trampoline, .-host_to_wasm_trampoline

# The thread-local: 0x40 bytes of TLS, the slot at 0x20 (0x20 - 0x40 = -0x20).
	.section .tbss,"awT",@nobits
	.p2align 3
	.zero 0x20
	.globl _ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit3VAL17h0123456789abcdefE
	.type _ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit3VAL17h0123456789abcdefE,@object
_ZN16wasmtime_runtime12traphandlers3tls3raw3PTR7__getit3VAL17h0123456789abcdefE:
	.zero 0x20
