package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// podFirewallComment tags the rule FirewallPod adds in the pod's network.
const podFirewallComment = "hookscope game day: connections to the webhook dropped at its pod"

// FirewallPod drops every connection to w's webhook port at its pod (a
// NetworkPolicy as a CNI enforces it at the pod, or a firewall in the pod)
// and creates the default-deny NetworkPolicy an operator would find in the
// webhook's namespace; it then closes the backend's open connections, so
// the API server's next call needs a new one. restore removes both.
func (l *Lab) FirewallPod(ctx context.Context, w *Webhook) (restore func(context.Context) error, err error) {
	var in []string // the command prefix that runs in the pod's network namespace
	switch {
	case w.pod != nil:
		in = []string{"ip", "netns", "exec", w.pod.Name}
	case w.inPods:
		ns, err := kindPodNetns(ctx, w.node, w.PodIP)
		if err != nil {
			return nil, err
		}
		in = []string{"docker", "exec", w.node, "ip", "netns", "exec", ns}
	default:
		return nil, fmt.Errorf("webhook %s has no backend pod to firewall", w.Spec.Name)
	}
	rule := append(in, "iptables", "-w", "-I", "INPUT", "1", "-p", "tcp", "--dport", strconv.Itoa(backendPort),
		"-m", "comment", "--comment", podFirewallComment, "-j", "DROP")
	if err := iptables(ctx, rule); err != nil {
		return nil, fmt.Errorf("firewalling the backend pod of %s: %w", w.Spec.Name, err)
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny-ingress", Namespace: w.Namespace},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	restore = func(ctx context.Context) error {
		err := w.client.NetworkingV1().NetworkPolicies(w.Namespace).Delete(ctx, np.Name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		return errors.Join(err, iptables(ctx, deleteRule(rule)))
	}
	if _, err := w.client.NetworkingV1().NetworkPolicies(w.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		return nil, errors.Join(fmt.Errorf("creating NetworkPolicy %s/%s: %w", w.Namespace, np.Name, err), restore(ctx))
	}
	if err := w.Server.CloseConnections(); err != nil {
		return nil, errors.Join(err, restore(ctx))
	}
	return restore, nil
}

// kindPodNetns finds, on a kind node, the network namespace that holds
// the pod IP ip.
func kindPodNetns(ctx context.Context, node string, ip netip.Addr) (string, error) {
	script := `for ns in $(ip netns list | cut -d' ' -f1); do ip -n "$ns" -o -4 addr show | grep -q "inet $0/" && { echo "$ns"; exit 0; }; done; exit 1`
	out, err := exec.CommandContext(ctx, "docker", "exec", node, "sh", "-c", script, ip.String()).Output()
	if err != nil {
		return "", fmt.Errorf("finding the network namespace of pod IP %s on node %s: %w", ip, node, err)
	}
	return strings.TrimSpace(string(out)), nil
}
