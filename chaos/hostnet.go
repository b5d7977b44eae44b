package chaos

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/internal/podnet"
)

// A hostNetwork backend serves on its node's own address. On the local
// provider the node is kwok's and its address is nobody's: the webhook's
// node gets an InternalIP in the guarded range (kwok keeps one it is
// given, and gives it to the node's hostNetwork pods), and this host takes
// that address on an interface of its own (podnet.NewHost), so the API
// server reaches the backend on the host's network, over loopback.

// hostNodeRange holds the addresses the local provider's nodes get for
// their hostNetwork pods: inside podnet.GuardPrefix, away from kwok's pod
// ranges (10.0.N.0/24 for the first nodes).
var hostNodeRange = netip.MustParsePrefix("10.0.253.0/24")

// ensureHostAddress gives node an InternalIP in hostNodeRange, unless it
// has one there.
func (w *Webhook) ensureHostAddress(ctx context.Context) error {
	n, err := w.client.CoreV1().Nodes().Get(ctx, w.node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("hostNetwork backend of %s: %w", w.Spec.Name, err)
	}
	var addrs []corev1.NodeAddress
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			addrs = append(addrs, a)
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && hostNodeRange.Contains(ip) {
			return nil
		}
	}
	h := fnv.New32a()
	h.Write([]byte(w.node))
	ip := hostNodeRange.Addr().As4()
	ip[3] = byte(1 + h.Sum32()%250)
	n.Status.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: netip.AddrFrom4(ip).String()}}, addrs...)
	if _, err := w.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("hostNetwork backend of %s: giving node %s an address: %w", w.Spec.Name, w.node, err)
	}
	return nil
}

// hostBackend takes the hostNetwork pod's address (its node's) on this host.
func (w *Webhook) hostBackend() (*podnet.Pod, error) {
	if !hostNodeRange.Contains(w.PodIP) {
		return nil, fmt.Errorf("hostNetwork backend of %s: its pod has IP %s, not its node's address in %s", w.Spec.Name, w.PodIP, hostNodeRange)
	}
	return podnet.NewHost(w.Spec.Name, w.PodIP)
}
