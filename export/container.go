package export

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// containerIDRe matches the 64-hex-digit id that container runtimes put in
// the cgroup path: docker-ID.scope, cri-containerd-ID.scope,
// crio-ID.scope, libpod-ID.scope, or a bare ID directory (cgroupfs
// drivers, Kubernetes' kubepods/.../ID).
var containerIDRe = regexp.MustCompile(`(?:^|[-/])([0-9a-f]{64})(?:\.scope)?$`)

// ContainerID is the id of the container pid runs in, from
// /proc/PID/cgroup, or "" when it runs in none. The conventions' container.id
// is the runtime's id, which is what runtimes name cgroups after.
func ContainerID(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("container id of pid %d: %w", pid, err)
	}
	defer f.Close()
	return containerIDFromCgroup(f)
}

// containerIDFromCgroup reads a /proc/PID/cgroup file: lines
// "HIERARCHY:CONTROLLERS:PATH" (one line "0::PATH" on cgroup v2).
func containerIDFromCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		// Walk up the path: systemd may put a process in a sub-cgroup
		// of its container's (".../docker-ID.scope/init.scope").
		for p := parts[2]; p != "/" && p != "." && p != ""; p = filepath.Dir(p) {
			if m := containerIDRe.FindStringSubmatch(filepath.Base(p)); m != nil {
				return m[1], nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read cgroup: %w", err)
	}
	return "", nil
}
