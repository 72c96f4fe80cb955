# A synthetic "Wasmtime" of the entry-FP generation, for layout's tests:
# functions written by hand in the shapes discover.go looks for, under the
# (mangled) names it looks them up by, with offsets unlike any real build.
#
#   CallThreadState:   vm_store_context 0x18, prev 0x98, old_state 0xc0
#   EntryStoreContext: exit pc 0x40, exit trampoline fp 0x48, entry fp 0x50
#   VMStoreContext:    exit trampoline fp 0x28, exit pc 0x30, entry fp 0x40
#   thread-local slot: fs-0x58, bit 0 tagged
#
# Built by the tests with: gcc -nostdlib -static -o OUT entryfp.s

	.text
	.globl _start
	.type _start,@function
_start:
	hlt
	.size _start, .-_start

# Backtrace::new_with_trap_state(rdi = innermost CallThreadState, rsi = store)
	.globl _ZN8wasmtime7runtime2vm12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE
	.type _ZN8wasmtime7runtime2vm12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE,@function
_ZN8wasmtime7runtime2vm12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE:
	push %r12
	push %r13
	push %rbx
	mov %rdi,%r12
	mov %rsi,%r13
	# the store's own activation
	mov 0x30(%r13),%rcx
	mov 0x28(%r13),%rax
	mov (%rax),%r8
	mov 0x40(%r13),%r9
	mov %r9,0x8(%rsp)
.Lvisit:
	mov 0x8(%rsp),%r9
	call .Lvisit_frames
.Lnext:
	# older activations of the same store
	test %r12,%r12
	je .Ldone
	mov %r12,%rax
	mov 0x98(%r12),%r12
	cmp 0x18(%rax),%r13
	jne .Lnext
	mov 0xc0(%rax),%rax
	mov 0x48(%rax),%rdx
	mov (%rdx),%r8
	mov 0x40(%rax),%rcx
	mov 0x50(%rax),%rdx
	mov %rdx,0x8(%rsp)
	jmp .Lvisit
.Ldone:
	pop %rbx
	pop %r13
	pop %r12
	ret
.Lvisit_frames:
	ret
	.size _ZN8wasmtime7runtime2vm12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE, .-_ZN8wasmtime7runtime2vm12traphandlers9backtrace9Backtrace19new_with_trap_state17h0123456789abcdefE

# tls::raw::get
	.globl _ZN8wasmtime7runtime2vm12traphandlers3tls3raw3get17h0123456789abcdefE
	.type _ZN8wasmtime7runtime2vm12traphandlers3tls3raw3get17h0123456789abcdefE,@function
_ZN8wasmtime7runtime2vm12traphandlers3tls3raw3get17h0123456789abcdefE:
	mov %fs:0,%rax
	mov -0x58(%rax),%rax
	and $-2,%rax
	ret
	.size _ZN8wasmtime7runtime2vm12traphandlers3tls3raw3get17h0123456789abcdefE, .-_ZN8wasmtime7runtime2vm12traphandlers3tls3raw3get17h0123456789abcdefE

	.section .rodata
	.ascii "37.0.0Module was compiled with incompatible Wasmtime version '"

# The thread-local: 0x60 bytes of TLS, the slot at 0x08 (0x08 - 0x60 = -0x58).
	.section .tbss,"awT",@nobits
	.p2align 3
	.zero 8
	.globl _ZN8wasmtime7runtime2vm3sys4unix3TLS29_$u7b$$u7b$constant$u7d$$u7d$28_$u7b$$u7b$closure$u7d$$u7d$3VAL17h0123456789abcdefE
	.type _ZN8wasmtime7runtime2vm3sys4unix3TLS29_$u7b$$u7b$constant$u7d$$u7d$28_$u7b$$u7b$closure$u7d$$u7d$3VAL17h0123456789abcdefE,@object
_ZN8wasmtime7runtime2vm3sys4unix3TLS29_$u7b$$u7b$constant$u7d$$u7d$28_$u7b$$u7b$closure$u7d$$u7d$3VAL17h0123456789abcdefE:
	.zero 0x58
