//go:build linux

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hookscopeBinary builds the command once per test run (or takes
// $HOOKSCOPE_BIN) into a directory any user can read.
func hookscopeBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("HOOKSCOPE_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(sharedDir(t), "hookscope")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building hookscope: %v\n%s", err, out)
	}
	return bin
}

// unreachableKubeconfig names an API server on a loopback port nothing
// listens on.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(sharedDir(t), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://` + addr + `", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sharedDir is a temporary directory the unprivileged user can read too
// (t.TempDir's parent is private to root).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hookscope-cmd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBadEnvironmentGetsOneLine checks that each broken precondition ends
// the agent with exit code 1 and one line saying what failed and what to do.
func TestBadEnvironmentGetsOneLine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop privileges and hide BTF")
	}
	bin := hookscopeBinary(t)
	kc := unreachableKubeconfig(t)
	// A kernel that refuses the programs does not stop the agent: it says
	// so in a line of its own and goes on (here to the unreachable API
	// server, the line that ends it).
	cases := []struct {
		name     string
		argv     []string
		want     []string
		degraded []string // the line before the last, when the kernel refused
	}{
		{"no kubeconfig", []string{bin, "agent"}, []string{"no kubeconfig", "--kubeconfig"}, nil},
		{"kubeconfig missing", []string{bin, "agent", "--kubeconfig", "/nonexistent/kubeconfig"}, []string{"reading kubeconfig /nonexistent/kubeconfig"}, nil},
		{"API server unreachable", []string{bin, "agent", "--no-ebpf", "--kubeconfig", kc}, []string{"cannot reach the API server at https://127.0.0.1:", "check the kubeconfig"}, nil},
		{"no permission to load BPF", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
			bin, "agent", "--kubeconfig", kc}, []string{"cannot reach the API server"}, []string{"eBPF data plane not loaded", "loading handshake programs", "run as root, or grant CAP_BPF"}},
		{"no kernel BTF", []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			"mount -t tmpfs none /sys/kernel/btf && exec " + bin + " agent --kubeconfig " + kc}, []string{"cannot reach the API server"}, []string{"eBPF data plane not loaded", "reading kernel BTF", "CONFIG_DEBUG_INFO_BTF"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"} // no KUBECONFIG, no in-cluster env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errAs(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want exit code 1; stderr:\n%s", err, stderr.String())
			}
			out := strings.TrimRight(stderr.String(), "\n")
			if c.degraded != nil {
				first, last, ok := strings.Cut(out, "\n")
				if !ok {
					t.Fatalf("want the kernel's refusal on a line of its own, then the error; got:\n%s", out)
				}
				for _, w := range c.degraded {
					if !strings.Contains(first, w) {
						t.Errorf("line %q lacks %q", first, w)
					}
				}
				out = last
			}
			if strings.Count(out, "\n") != 0 {
				t.Errorf("want one line, got:\n%s", out)
			}
			if !strings.HasPrefix(out, "hookscope: ") {
				t.Errorf("line does not start with the command's name: %q", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("line %q lacks %q", out, w)
				}
			}
		})
	}
}

func errAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}
