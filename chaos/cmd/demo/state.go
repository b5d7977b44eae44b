//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// State is what a running demo writes to state.json: enough for down to
// stop it (the background process, every process of the lab, the network
// namespace) and for up to say what to try.
type State struct {
	// Pid is the background process: it holds the lab and serves the
	// webhook; SIGTERM makes it stop everything.
	Pid     int       `json:"pid"`
	Dir     string    `json:"dir"`
	Started time.Time `json:"started"`
	// Ready is set once the agent has named the failure; Error when the
	// demo could not come up (the background process then exits).
	Ready     bool    `json:"ready"`
	Error     string  `json:"error,omitempty"`
	UpSeconds float64 `json:"upSeconds,omitempty"`

	Binary     string `json:"binary"` // the hookscope binary the agent runs
	Kubeconfig string `json:"kubeconfig,omitempty"`
	APIServer  string `json:"apiServer,omitempty"` // host:port
	AgentAPI   string `json:"agentAPI,omitempty"`
	JaegerUI   string `json:"jaegerUI,omitempty"`
	LabDir     string `json:"labDir,omitempty"`

	Namespace     string `json:"namespace,omitempty"`
	Configuration string `json:"configuration,omitempty"`
	Webhook       string `json:"webhook,omitempty"`
	Label         string `json:"label,omitempty"` // key=value a pod needs for the webhook to see it
	WriteCommand  string `json:"writeCommand,omitempty"`
	WriteError    string `json:"writeError,omitempty"`
	FindingClass  string `json:"findingClass,omitempty"`
	FindingEffect string `json:"findingEffect,omitempty"`

	// Processes are every process the lab started (cluster components,
	// Jaeger, the agent), found by their command lines naming Dir.
	Processes []Process `json:"processes,omitempty"`
	// NetworkNamespaces are the namespaces the webhook's backend uses.
	NetworkNamespaces []string `json:"networkNamespaces,omitempty"`
	// BackendIP is the webhook's pod IP, which a host route sends into
	// its network namespace while the demo runs.
	BackendIP string `json:"backendIP,omitempty"`
}

// Process is one process of the demo.
type Process struct {
	Pid     int    `json:"pid"`
	Command string `json:"command"`
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }
func logPath(dir string) string   { return filepath.Join(dir, "demo.log") }

// readState reads dir's state; a missing file is (nil, nil).
func readState(dir string) (*State, error) {
	raw, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the demo's state: %w", err)
	}
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("reading the demo's state %s: %w", statePath(dir), err)
	}
	return &s, nil
}

// write replaces the state file at once (a reader never sees half of it).
func (s *State) write() error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("writing the demo's state: %w", err)
	}
	if err := os.Rename(tmp, statePath(s.Dir)); err != nil {
		return fmt.Errorf("writing the demo's state: %w", err)
	}
	return nil
}

// lock takes dir's lock file, so an up and a down (or two ups) never run
// at once; the returned function releases it.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "demo.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the demo's lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("taking the demo's lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// processesOf lists the live processes whose command line names dir (an
// argument that is dir, or a path under it, also after an '='): the
// background process and every process the lab started. This process and
// its parent (up, waiting for the background process; or make) are left
// out.
func processesOf(dir string) []Process {
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || pid == os.Getppid() {
			continue
		}
		if argv, ok := liveArgs(pid); ok && namesDir(argv, dir) {
			out = append(out, Process{Pid: pid, Command: strings.Join(argv, " ")})
		}
	}
	return out
}

// liveArgs is pid's command line, if pid is a live (not zombie) process.
func liveArgs(pid int) ([]string, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return nil, false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, false
	}
	if len(raw) == 0 {
		// Alive, but its arguments are not there yet: a process in the
		// middle of exec (as one just started is) has none for a moment.
		return nil, true
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), true
}

// namesDir reports whether an argument is dir or a path under it.
func namesDir(argv []string, dir string) bool {
	for _, a := range argv {
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		if a == dir || strings.HasPrefix(a, dir+"/") {
			return true
		}
	}
	return false
}

// alive reports whether p still runs with the command line it was
// recorded with (a recycled pid is not it).
func (p Process) alive() bool {
	argv, ok := liveArgs(p.Pid)
	return ok && strings.Join(argv, " ") == p.Command
}
