package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

type machine struct {
	kernel     string
	cpu        string
	cores      int
	hypervisor bool
	memory     string
	load       string
	goVersion  string
	perf       string
	irqTime    string // CONFIG_IRQ_TIME_ACCOUNTING: "y", "n" or "?"
	maxRate    string // kernel.perf_event_max_sample_rate
}

func describeMachine() machine {
	m := machine{cores: runtime.NumCPU(), load: loadAverage(), goVersion: runtime.Version(), irqTime: "?"}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch {
			case !ok:
			case k == "model name" && m.cpu == "":
				m.cpu = v
			case k == "flags" && strings.Contains(" "+v+" ", " hypervisor "):
				m.hypervisor = true
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kib float64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kib); err == nil {
					m.memory = fmt.Sprintf("%.1f GiB", kib/(1<<20))
				}
			}
		}
	}
	if out, err := exec.Command("perf", "--version").Output(); err == nil {
		m.perf = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/perf_event_max_sample_rate"); err == nil {
		m.maxRate = strings.TrimSpace(string(b))
	}
	m.irqTime = kernelConfig("CONFIG_IRQ_TIME_ACCOUNTING")
	return m
}

// kernelConfig returns "y", "n" (not set) or "?" (no /proc/config.gz).
func kernelConfig(name string) string {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return "?"
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return "?"
	}
	b, err := io.ReadAll(z)
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return v
		}
	}
	return "n"
}

// bpfObject names the kernel walker measured: the SHA-256 of the compiled
// BPF object that wasmtrace embeds (bpf/ changes more often than commits).
func bpfObject(repo string) string {
	b, err := os.ReadFile(repo + "/loader/wasmtrace_x86_bpfel.o")
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("`wasmtrace_x86_bpfel.o` sha256 %.12x", sha256.Sum256(b))
}

// gitDescribe names the wasmtrace source measured.
func gitDescribe(repo string) string {
	out, err := exec.Command("git", "-C", repo, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
