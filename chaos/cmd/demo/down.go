//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// down stops a running demo; with none, it says so.
func down(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		fmt.Println("demo: no demo is running (nothing in " + dir + ")")
		return nil
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
	if st == nil {
		if left := processesOf(dir); len(left) == 0 {
			fmt.Println("demo: no demo is running (nothing in " + dir + ")")
			return os.RemoveAll(dir)
		}
		st = &State{Dir: dir}
	}
	start := time.Now()
	if err := stop(dir, st); err != nil {
		return err
	}
	fmt.Printf("demo: stopped in %.1f s; no process, network namespace or file of it is left (%s removed)\n",
		time.Since(start).Seconds(), dir)
	return nil
}

// stop asks the background process to stop everything (SIGTERM) and waits
// for it; whatever is left after that (it was killed, or hung) is stopped
// here: the lab's processes, the webhook's network namespace. It then
// checks that nothing is left and removes dir.
func stop(dir string, st *State) error {
	if st.Pid != 0 && st.running() {
		fmt.Printf("demo: stopping the demo (process %d): webhook, agent, Jaeger, cluster\n", st.Pid)
		_ = syscall.Kill(st.Pid, syscall.SIGTERM)
		if !waitGone(func() bool { return st.running() }, stopTimeout) {
			fmt.Printf("demo: process %d did not stop within %s; killing it\n", st.Pid, stopTimeout)
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		}
		// The background process ends its log with "demo: stopped" when
		// everything stopped cleanly; otherwise show what it said.
		if log := tail(logPath(dir), 15); !strings.HasSuffix(log, "demo: stopped") {
			fmt.Printf("demo: the demo's last words (%s):\n%s\n", logPath(dir), log)
		}
	}
	if err := killLeftovers(dir, st); err != nil {
		return err
	}
	for _, ns := range st.NetworkNamespaces {
		if netnsExists(ns) {
			if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
				return fmt.Errorf("deleting network namespace %s: %w: %s", ns, err, out)
			}
		}
	}
	if err := leftovers(dir, st); err != nil {
		return fmt.Errorf("%w (files kept in %s)", err, dir)
	}
	return os.RemoveAll(dir)
}

// killLeftovers kills the processes recorded in st, and any other whose
// command line names dir, and waits for them to exit.
func killLeftovers(dir string, st *State) error {
	left := map[int]Process{}
	for _, p := range st.Processes {
		if p.alive() {
			left[p.Pid] = p
		}
	}
	for _, p := range processesOf(dir) {
		left[p.Pid] = p
	}
	if len(left) == 0 {
		return nil
	}
	for _, p := range left {
		fmt.Printf("demo: killing leftover process %d (%s)\n", p.Pid, short(p.Command))
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	anyAlive := func() bool {
		for _, p := range left {
			if p.alive() {
				return true
			}
		}
		return false
	}
	if !waitGone(anyAlive, 10*time.Second) {
		return errors.New("leftover processes did not exit after SIGKILL")
	}
	return nil
}

// leftovers checks that nothing of the demo is left: no recorded process,
// none naming dir, no network namespace or mount of it, the API server's
// port closed.
func leftovers(dir string, st *State) error {
	var errs []error
	for _, p := range st.Processes {
		if p.alive() {
			errs = append(errs, fmt.Errorf("process %d still runs (%s)", p.Pid, short(p.Command)))
		}
	}
	for _, p := range processesOf(dir) {
		errs = append(errs, fmt.Errorf("process %d still runs (%s)", p.Pid, short(p.Command)))
	}
	for _, ns := range st.NetworkNamespaces {
		if netnsExists(ns) {
			errs = append(errs, fmt.Errorf("network namespace %s still exists", ns))
		}
	}
	var nsMounts []string
	for _, ns := range st.NetworkNamespaces {
		nsMounts = append(nsMounts, "/run/netns/"+ns)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && (namesDir([]string{f[1]}, dir) || slices.Contains(nsMounts, f[1])) {
				errs = append(errs, fmt.Errorf("%s is still mounted", f[1]))
			}
		}
	}
	if st.BackendIP != "" {
		if out, _ := exec.Command("ip", "route", "show", "exact", st.BackendIP).Output(); len(strings.TrimSpace(string(out))) > 0 {
			errs = append(errs, fmt.Errorf("a route to the webhook's pod IP is left: %s", strings.TrimSpace(string(out))))
		}
	}
	if st.APIServer != "" {
		if c, err := net.DialTimeout("tcp", st.APIServer, time.Second); err == nil {
			c.Close()
			errs = append(errs, fmt.Errorf("the API server's port %s still accepts connections", st.APIServer))
		}
	}
	return errors.Join(errs...)
}

// netnsExists reports whether `ip netns` has a namespace named ns.
func netnsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// waitGone polls cond until it is false, at most d; it reports whether it
// became false.
func waitGone(cond func() bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !cond() {
			return true
		}
	}
	return !cond()
}

// short is a command line cut to a readable length.
func short(cmd string) string {
	if len(cmd) > 100 {
		return cmd[:100] + "..."
	}
	return cmd
}
