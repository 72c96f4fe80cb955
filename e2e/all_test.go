package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// -a traces every Wasmtime process: two versions running before it starts,
// a third started while it runs, and one in its own PID namespace (as in a
// container), each rooted at its host pid with its own exact stacks.
func TestAllProcesses(t *testing.T) {
	requireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) not found: %v", err)
	}
	v39 := startTarget(t, targetBin(t, "v39", false), "-scenario", "chain")
	v37 := startTarget(t, targetBin(t, "v37", false), "-scenario", "nested")
	// A new PID namespace: inside it the target is pid 1.
	ns := startTarget(t, unshare, "--pid", "--fork", "--kill-child", targetBin(t, "v39", false), "-scenario", "recursion")
	nsPID := childPID(t, ns.Process.Pid)

	var late *exec.Cmd
	done := make(chan result, 1)
	go func() { done <- runWasmtrace(t, "-a", "-d", "5s", "-F", "499", "--format", "folded") }()
	time.Sleep(1500 * time.Millisecond)
	late = startTarget(t, targetBin(t, "v3", false), "-scenario", "hostburn")
	r := <-done
	if r.code != 0 {
		t.Fatalf("wasmtrace -a exited %d: %s", r.code, r.stderr)
	}

	perProcess := map[int]map[string]int{}
	for stack, n := range folded(t, r.stdout) {
		root, rest, _ := strings.Cut(stack, ";")
		m := processRoot.FindStringSubmatch(root)
		if m == nil {
			t.Fatalf("stack not rooted at a process: %q", stack)
		}
		pid, _ := strconv.Atoi(m[1])
		if perProcess[pid] == nil {
			perProcess[pid] = map[string]int{}
		}
		perProcess[pid][rest] += n
	}
	for _, tc := range []struct {
		name string
		pid  int
		want string
	}{
		{"v39 chain", v39.Process.Pid, "run;chain_a;chain_b;chain_c"},
		{"v37 nested", v37.Process.Pid, "outer;outer_mid;[host];inner;inner_leaf"},
		{"v39 in a PID namespace", nsPID, "rec_entry;" + repeat("rec", 101)},
		{"v3 started later", late.Process.Pid, "hb_outer;hb_mid;[host]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stacks := perProcess[tc.pid]
			if stacks == nil {
				t.Fatalf("pid %d not in the profile; processes: %v", tc.pid, keys(perProcess))
			}
			checkStacks(t, stacks, tc.want, 30)
		})
	}
}

var processRoot = regexp.MustCompile(`^pid (\d+) \(.*\)$`)

// childPID is the only child of pid (unshare --fork's target).
func childPID(t *testing.T, pid int) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	if err != nil {
		t.Fatalf("find the child of %d: %v", pid, err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("find the child of %d: %q", pid, out)
	}
	return child
}

func keys(m map[int]map[string]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Without a terminal, top prints one table a second and ends with -d.
func TestTopWithoutTerminal(t *testing.T) {
	requireRoot(t)
	target := startTarget(t, targetBin(t, "v39", false), "-scenario", "chain")
	r := runWasmtrace(t, "top", "-p", fmt.Sprint(target.Process.Pid), "-d", "3.5s")
	if r.code != 0 {
		t.Fatalf("top exited %d: %s", r.code, r.stderr)
	}
	screens := strings.Count(r.stdout, "wasmtrace top: pid ")
	if screens < 2 || screens > 4 {
		t.Errorf("%d screens in 3.5 s, want one a second:\n%s", screens, r.stdout)
	}
	last := r.stdout[strings.LastIndex(r.stdout, "wasmtrace top: pid "):]
	lines := strings.Split(strings.TrimSpace(last), "\n")
	if len(lines) < 4 || !strings.HasSuffix(lines[3], "  chain_c") {
		t.Errorf("the busiest function is not chain_c:\n%s", last)
	}
	for _, f := range []string{"run", "chain_a", "chain_b"} {
		if !strings.Contains(last, "  "+f+"\n") {
			t.Errorf("%s missing from:\n%s", f, last)
		}
	}
}
