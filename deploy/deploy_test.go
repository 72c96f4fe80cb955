package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/wasmtrace/wasmtrace/internal/testtarget"
)

const unitFile = "systemd/wasmtrace-agent.service"

// unitCaps is the unit's CapabilityBoundingSet, lower case without CAP_
// (setpriv's and Kubernetes' spelling, upper-cased there).
func unitCaps(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			var caps []string
			for _, c := range strings.Fields(v) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
			slices.Sort(caps)
			return caps
		}
	}
	t.Fatalf("%s has no CapabilityBoundingSet", unitFile)
	return nil
}

func buildWasmtrace(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wasmtrace")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wasmtrace")
	cmd.Dir = testtarget.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build wasmtrace: %v\n%s", err, out)
	}
	return bin
}

// systemd-analyze verify checks the unit's syntax, every directive and the
// executable; the unit's path to the binary is swapped for a built one.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if testtarget.InCI() {
			t.Fatalf("systemd-analyze not found (Debian package systemd): %v", err)
		}
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildWasmtrace(t)
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/wasmtrace", bin)
	if text == string(unit) {
		t.Fatalf("%s does not run /usr/local/bin/wasmtrace", unitFile)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(unitFile))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The unit's capabilities are enough, and each of them is needed: the
// agent runs as root limited to the unit's bounding set, with no new
// privileges (setpriv, as systemd would start it: PID 1 here is not
// systemd), and profiles a target of another user; without any one of the
// capabilities it gets no sample of it.
func TestSystemdCapabilitiesSufficeAndAreNeeded(t *testing.T) {
	testtarget.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	bin := buildWasmtrace(t)
	target := testtarget.Start(t, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		testtarget.Bin(t, "v39", false), "-scenario", "chain")
	caps := unitCaps(t)
	if want := []string{"bpf", "perfmon", "sys_ptrace"}; !slices.Equal(caps, want) {
		t.Fatalf("the unit's capabilities are %v, want %v", caps, want)
	}
	run := func(caps []string) (samples int64, log string) {
		dir := t.TempDir()
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		cmd := exec.Command(setpriv, "--bounding-set="+set, "--inh-caps=-all", "--no-new-privs",
			bin, "agent", "--no-export", "-o", dir, "--interval", "1s")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3500 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("the agent did not end within 10 s of SIGTERM")
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.pb.gz"))
		for _, f := range files {
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := profile.Parse(r)
			r.Close()
			if err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			for _, s := range p.Sample {
				if s.NumLabel["pid"][0] == int64(target.Process.Pid) && len(s.Location) == 4 &&
					s.Location[0].Line[0].Function.Name == "chain_c" {
					samples += s.Value[0]
				}
			}
		}
		return samples, stderr.String()
	}
	if n, log := run(caps); n < 100 {
		t.Fatalf("with the unit's capabilities %v: %d samples of the target's chain_c stack, want >= 100\n%s", caps, n, log)
	} else {
		t.Logf("with %v: %d samples", caps, n)
	}
	for _, drop := range caps {
		less := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == drop })
		if n, log := run(less); n != 0 {
			t.Errorf("without %s: %d samples of the target; then the unit asks for more than it needs\n%s", drop, n, log)
		}
	}
}

// The DaemonSet is decoded strictly with the Kubernetes API's own types
// (k8s.io/api, in the testdata/k8scheck module), and asks for exactly the
// unit's capabilities, hostPID, and nothing privileged.
func TestDaemonSetValidates(t *testing.T) {
	cmd := exec.Command("go", "run", ".", "../../kubernetes/daemonset.yaml")
	cmd.Dir = "testdata/k8scheck"
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("validate the DaemonSet: %v\n%s", err, stderr)
	}
	var objs []struct {
		Kind string
		Spec struct {
			Template struct {
				Spec struct {
					HostPID                      bool
					AutomountServiceAccountToken *bool
					Containers                   []struct {
						Args            []string
						SecurityContext struct {
							Privileged               *bool
							AllowPrivilegeEscalation *bool
							Capabilities             struct{ Add, Drop []string }
						}
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out, &objs); err != nil {
		t.Fatalf("k8scheck output: %v", err)
	}
	found := false
	for _, o := range objs {
		if o.Kind != "DaemonSet" {
			continue
		}
		found = true
		ps := o.Spec.Template.Spec
		if !ps.HostPID {
			t.Errorf("hostPID is off: the agent would see only its own pod's processes")
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("the service account token is mounted; the agent needs no API access")
		}
		if len(ps.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(ps.Containers))
		}
		c := ps.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != "agent" {
			t.Errorf("container args %v do not run wasmtrace agent", c.Args)
		}
		sc := c.SecurityContext
		if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("the container may be privileged or escalate")
		}
		var add []string
		for _, c := range sc.Capabilities.Add {
			add = append(add, strings.ToLower(c))
		}
		slices.Sort(add)
		if want := unitCaps(t); !slices.Equal(add, want) {
			t.Errorf("capabilities added %v, want the unit's %v", add, want)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("capabilities dropped %v, want [ALL]", sc.Capabilities.Drop)
		}
	}
	if !found {
		t.Fatal(fmt.Sprintf("no DaemonSet in the manifest: %s", out))
	}
}
