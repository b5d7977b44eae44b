//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// up starts the background process unless a demo already runs, waits until
// it is ready (or failed), and prints what to try.
func up(dir, agent string) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st != nil && st.running() && st.Ready {
		fmt.Printf("A demo is already running (since %s, process %d).\n\n", st.Started.Format("15:04:05"), st.Pid)
		printHints(os.Stdout, st)
		return nil
	}
	if st != nil {
		// A demo that died, or one still starting from an up that was
		// interrupted: stop what is left before starting again.
		fmt.Println("demo: a previous demo did not stop cleanly; stopping what is left of it")
		if err := stop(dir, st); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	fmt.Printf("demo: starting the local cluster, Jaeger, the agent and a broken webhook (log: %s)\n", logPath(dir))
	pid, err := spawn(dir, agent)
	if err != nil {
		return err
	}
	st, err = waitReady(dir, pid)
	if err != nil {
		return fmt.Errorf("%w\nlast lines of %s:\n%s", err, logPath(dir), tail(logPath(dir), 20))
	}
	fmt.Println()
	printHints(os.Stdout, st)
	return nil
}

// spawn starts this executable again as the background process, in a
// session of its own (it outlives make and the terminal), its output to
// the demo's log.
func spawn(dir, agent string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the demo's executable: %w", err)
	}
	logf, err := os.OpenFile(logPath(dir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("opening the demo's log: %w", err)
	}
	defer logf.Close()
	args := []string{"serve", "-dir", dir}
	if agent != "" {
		args = append(args, "-agent", agent)
	}
	closeInheritedFiles()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"=serve")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the demo's background process: %w", err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while up still waits; after that it is init's.
	go cmd.Wait() //nolint:errcheck
	return pid, nil
}

// closeInheritedFiles marks every descriptor above stderr close-on-exec.
// Go opens its own so, but not those this process inherited: a lock that
// `flock LOCK make demo` holds would otherwise be held by the background
// process, and every process of the lab, for as long as the demo runs.
func closeInheritedFiles() {
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// waitReady polls the state file until the background process pid says it
// is ready or failed, or exits.
func waitReady(dir string, pid int) (*State, error) {
	deadline := time.Now().Add(startTimeout + stopTimeout)
	for time.Now().Before(deadline) {
		st, err := readState(dir)
		if err != nil {
			return nil, err
		}
		if st != nil && st.Pid == pid {
			switch {
			case st.Ready:
				return st, nil
			case st.Error != "":
				return nil, fmt.Errorf("the demo did not come up: %s", st.Error)
			}
		}
		if _, ok := liveArgs(pid); !ok {
			return nil, errors.New("the demo's background process exited before it was ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("the demo was not ready within %s (it goes on starting; `make demo-down` stops it)", startTimeout+stopTimeout)
}

// running reports whether the state's background process is alive.
func (s *State) running() bool {
	argv, ok := liveArgs(s.Pid)
	return ok && namesDir(argv, s.Dir)
}

// printHints says what runs and what to try, in the operator's words.
func printHints(w io.Writer, st *State) {
	bin := filepath.Dir(st.Binary)
	fmt.Fprintf(w, `hookscope demo: a local cluster (real kube-apiserver and etcd, simulated nodes), Jaeger,
the hookscope agent, and one broken admission webhook:
  ValidatingWebhookConfiguration %q, webhook %s, failurePolicy Fail,
  for pods created in namespace %s with the label %s.
  Its server presents a serving certificate that expired an hour ago.
The agent names it: %s (%s).

Try:
  export KUBECONFIG=%s
  export PATH=%s:$PATH

  # every webhook, its health and why (--probe: call each backend as the API server does)
  hookscope status --probe
  # the evidence, what the failure breaks, and the fixes
  hookscope explain %s --probe
  # the same, as a kubectl plugin
  kubectl hookscope status --probe
  kubectl get validatingwebhookconfigurations,pods -A

  # a write the webhook rejects:
  %s
  # it fails with:
%s

  # the agent's findings (JSON)
  curl -s %s/findings
  # the finding as a span: Jaeger UI
  %s/search?service=hookscope-agent

Stop it: make demo-down
`, st.Configuration, st.Webhook, st.Namespace, st.Label, st.FindingClass, st.FindingEffect,
		st.Kubeconfig, bin, st.Webhook, st.WriteCommand, indent(st.WriteError, "  #   "),
		st.AgentAPI, st.JaegerUI)
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

// tail is the last n lines of the file at path.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
