// Package deploy holds no code: its tests check the systemd unit
// (systemd/) and the Kubernetes DaemonSet (kubernetes/) that run
// wasmtrace agent.
package deploy
