package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// On the local provider the API server and the agent share the host: the
// API server's packets are told apart by its cgroup (cgroup v2), which it
// is moved into first. Sockets keep the cgroup they were made in, so only
// connections the API server makes after the move are dropped; the
// caller closes the older ones.

// blockAPIServer implements pathBlocker: iptables drops, in the host's
// OUTPUT chain, the packets of sockets of the API server's cgroup to to.
func (l *Local) blockAPIServer(ctx context.Context, _ string, to netip.AddrPort) ([]string, error) {
	rel, err := l.apiServerCgroup()
	if err != nil {
		return nil, err
	}
	rule := []string{"iptables", "-w", "-I", "OUTPUT", "1", "-m", "cgroup", "--path", rel,
		"-p", "tcp", "-d", to.Addr().String(), "--dport", strconv.Itoa(int(to.Port())),
		"-m", "comment", "--comment", gameDayComment, "-j", "DROP"}
	if err := iptables(ctx, rule); err != nil {
		return nil, fmt.Errorf("%w (the game day installs iptables: make host-deps)", err)
	}
	return rule, nil
}

// apiServerCgroup moves the API server into a cgroup v2 group of its own
// (once) and returns the group's path under the cgroup v2 root.
func (l *Local) apiServerCgroup() (string, error) {
	root, err := cgroup2Root()
	if err != nil {
		return "", err
	}
	pid, err := l.apiServerPID()
	if err != nil {
		return "", err
	}
	rel := "hookscope-apiserver-" + l.name
	dir := filepath.Join(root, rel)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return "", fmt.Errorf("moving the API server (pid %d) into cgroup %s: %w", pid, dir, err)
	}
	return rel, nil
}

// removeAPIServerCgroup removes the API server's group once it has exited.
func (l *Local) removeAPIServerCgroup() error {
	root, err := cgroup2Root()
	if err != nil {
		return nil // never made one
	}
	if err := os.Remove(filepath.Join(root, "hookscope-apiserver-"+l.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the API server's cgroup: %w", err)
	}
	return nil
}

// cgroup2Root is where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, elsewhere (/sys/fs/cgroup/unified) on a hybrid one.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fields := strings.Fields(pre); len(fields) >= 5 && fields[3] == "/" {
			return fields[4], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}
