package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// blockAPIServer implements pathBlocker on kind: the API server (on the
// control-plane node, host network) reaches a pod on a worker through the
// worker's FORWARD chain, where its packets alone are dropped; the
// worker's own connections (the agent's probe) never pass there.
func (k *Kind) blockAPIServer(ctx context.Context, node string, to netip.AddrPort) ([]string, error) {
	cp := k.name + "-control-plane"
	if node == cp {
		return nil, fmt.Errorf("the backend runs on the control-plane node, where the API server's packets do not cross the network")
	}
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", cp).Output()
	if err != nil {
		return nil, fmt.Errorf("reading the control-plane node's address: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return nil, fmt.Errorf("the control-plane node %s has no address", cp)
	}
	rule := []string{"docker", "exec", node, "iptables", "-w", "-I", "FORWARD", "1", "-s", fields[0],
		"-p", "tcp", "-d", to.Addr().String(), "--dport", strconv.Itoa(int(to.Port())),
		"-m", "comment", "--comment", gameDayComment, "-j", "DROP"}
	if err := iptables(ctx, rule); err != nil {
		return nil, err
	}
	return rule, nil
}
