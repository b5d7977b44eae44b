package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// pathBlocker is a provider that can drop the API server's packets to a
// backend before they reach the backend's node, and only the API
// server's: the node's own connections (the agent's probe) get through,
// as on EKS when the node security group does not admit the webhook's
// port from the cluster security group.
type pathBlocker interface {
	blockAPIServer(ctx context.Context, node string, to netip.AddrPort) (rule []string, err error)
}

// BlockAPIServer drops the API server's packets to w's backend on the way
// to its node, then closes the backend's open connections (a restart
// would), so the API server's next call needs a new connection. restore
// removes the rule.
func (l *Lab) BlockAPIServer(ctx context.Context, w *Webhook) (restore func(context.Context) error, err error) {
	b, ok := l.Provider.(pathBlocker)
	if !ok {
		return nil, fmt.Errorf("provider %s cannot block the API server's packets", l.Provider.Name())
	}
	to := netip.AddrPortFrom(w.PodIP, backendPort)
	rule, err := b.blockAPIServer(ctx, w.node, to)
	if err != nil {
		return nil, fmt.Errorf("blocking the API server's packets to %s: %w", to, err)
	}
	restore = func(ctx context.Context) error { return iptables(ctx, deleteRule(rule)) }
	if err := w.Server.CloseConnections(); err != nil {
		return nil, errors.Join(err, restore(ctx))
	}
	return restore, nil
}

// gameDayComment tags the game day's firewall rules, so a person reading
// the host's rules knows whose they are.
const gameDayComment = "hookscope game day: the API server's path to a webhook blocked"

// iptables runs an iptables command (args[0] may be a wrapper such as
// "docker exec NODE").
func iptables(ctx context.Context, args []string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleteRule turns an "iptables -I CHAIN 1 ..." command into its "-D".
func deleteRule(insert []string) []string {
	out := make([]string, 0, len(insert))
	for i := 0; i < len(insert); i++ {
		if insert[i] == "-I" {
			out = append(out, "-D", insert[i+1])
			i += 2 // the chain, and the position after it
			continue
		}
		out = append(out, insert[i])
	}
	return out
}
