package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// What `wasmtrace inspect` must show for each build: every offset decoded
// from the binary, agreeing with the table, and confirmed live.
var inspectWant = map[string]struct {
	version, generation string
	fields              map[string]string // field -> offset
}{
	"v39": {"39.0.0", "entry-FP", map[string]string{
		"vm_store_context": "0x10", "prev": "0xa8", "old_state": "0xb0",
		"last_wasm_exit_trampoline_fp": "0x28", "last_wasm_exit_pc": "0x(20|30)", "last_wasm_entry_fp": "0x(30|40)"}},
	"v37": {"37.0.0", "entry-FP", map[string]string{
		"vm_store_context": "0x10", "prev": "0xb0", "old_state": "0xb8",
		"last_wasm_exit_trampoline_fp": "0x28", "last_wasm_exit_pc": "0x(20|30)", "last_wasm_entry_fp": "0x(30|38)"}},
	"v3": {"3.0.0", "seed", map[string]string{
		"limits": "0x48", "prev": "0x50", "old_last_wasm_exit_fp": "0x58", "old_last_wasm_exit_pc": "0x60",
		"old_last_wasm_entry_sp": "0x68", "last_wasm_exit_fp": "0x18", "last_wasm_exit_pc": "0x20", "last_wasm_entry_sp": "0x28"}},
}

func TestInspectLayout(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			want := inspectWant[v]
			cmd := startTarget(t, targetBin(t, v, false), "-scenario", "nested")
			r := runWasmtrace(t, "inspect", "-p", fmt.Sprint(cmd.Process.Pid))
			if r.code != 0 {
				t.Fatalf("inspect exited %d: %s", r.code, r.stderr)
			}
			out := r.stdout
			for _, s := range []string{"Wasmtime " + want.version, want.generation + " generation", "confirmed on", "compiled modules in memory"} {
				if !strings.Contains(out, s) {
					t.Errorf("inspect does not say %q:\n%s", s, out)
				}
			}
			for field, off := range want.fields {
				// "    prev    0xa8    [table ok]    followed as a list: ... at 0x...: mov 0xa8(%r14),%r14"
				re := regexp.MustCompile(`(?m)^\s+` + field + `\s+` + off + `\s+\[table ok[^\]]*\]\s+.* at 0x[0-9a-f]+: `)
				if !re.MatchString(out) {
					t.Errorf("no decoded, table-checked line for %s = %s:\n%s", field, off, out)
				}
			}
			if t.Failed() {
				return
			}
			t.Logf("%s", out)
		})
	}
}

// With the table off, the decoded layout alone walks every scenario
// exactly.
func TestStacksWithoutTable(t *testing.T) {
	requireRoot(t)
	for _, v := range versions {
		bin := targetBin(t, v, false)
		for _, sc := range scenarios {
			t.Run(v+"/"+sc.name, func(t *testing.T) {
				cmd := startTarget(t, bin, "-scenario", sc.name)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				run := exec.CommandContext(ctx, wasmtraceBin, "-p", fmt.Sprint(cmd.Process.Pid), "-d", "2s", "-F", "499", "--format", "folded", "-o", "-")
				run.Env = append(os.Environ(), "WASMTRACE_LAYOUT_TABLE=off")
				var out, errb bytes.Buffer
				run.Stdout, run.Stderr = &out, &errb
				if err := run.Run(); err != nil {
					t.Fatalf("wasmtrace: %v: %s", err, errb.String())
				}
				checkStacks(t, folded(t, out.String()), sc.want, 50)
			})
		}
	}
}
