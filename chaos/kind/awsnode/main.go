//go:build linux

// Command aws-node is the pod network of the game day's kind clusters, in the
// role EKS's VPC CNI (DaemonSet kube-system/aws-node) plays: until its pod
// runs on a node, that node has no CNI configuration and kubelet keeps it
// NotReady ("cni plugin not initialized"), so a webhook that rejects the
// pod's creation keeps the node NotReady, for real.
//
// It does what kind's own kindnetd does, no more: it writes a CNI
// configuration for the node's pod CIDR (the ptp, host-local and portmap
// plugins, which the node image carries in /opt/cni/bin) and routes every
// other node's pod CIDR to that node's InternalIP. It runs in the host
// network namespace with NET_ADMIN, reads Nodes through the API server and
// re-checks every few seconds; it writes nothing to the cluster.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	confDir := flag.String("cni-conf-dir", "/etc/cni/net.d", "where the CNI configuration is written (the node's, mounted)")
	interval := flag.Duration("interval", 5*time.Second, "how often Nodes are re-read")
	flag.Parse()
	node := os.Getenv("NODE_NAME")
	if node == "" {
		fmt.Fprintln(os.Stderr, "aws-node: NODE_NAME is not set (the DaemonSet sets it from spec.nodeName)")
		os.Exit(2)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws-node: %v\n", err)
		os.Exit(2)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "aws-node: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var last string
	for {
		if err := reconcile(ctx, client, node, *confDir); err != nil && err.Error() != last {
			log.Error("reconciling the pod network", "err", err)
			last = err.Error()
		} else if err == nil && last != "" {
			log.Info("pod network reconciled")
			last = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*interval):
		}
	}
}

// reconcile writes this node's CNI configuration and routes the other
// nodes' pod CIDRs.
func reconcile(ctx context.Context, client kubernetes.Interface, self, confDir string) error {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR == "" {
			continue
		}
		if n.Name == self {
			if err := writeConfig(confDir, n.Spec.PodCIDR); err != nil {
				return err
			}
			continue
		}
		if err := routeTo(n); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig writes the conflist when it differs, by rename so that the
// container runtime never reads half a file.
func writeConfig(dir, podCIDR string) error {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "aws-node",
		"plugins": []any{
			map[string]any{
				"type": "ptp", "ipMasq": false, "mtu": 1500,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": []any{[]any{map[string]any{"subnet": podCIDR}}},
					"routes": []any{map[string]any{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "10-aws-node.conflist")
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	return nil
}

// routeTo routes node n's pod CIDR through its InternalIP.
func routeTo(n corev1.Node) error {
	_, dst, err := net.ParseCIDR(n.Spec.PodCIDR)
	if err != nil {
		return fmt.Errorf("node %s: pod CIDR %q: %w", n.Name, n.Spec.PodCIDR, err)
	}
	var via net.IP
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip := net.ParseIP(a.Address); ip != nil && (ip.To4() != nil) == (dst.IP.To4() != nil) {
				via = ip
			}
		}
	}
	if via == nil {
		return nil // not addressed yet
	}
	if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: via}); err != nil {
		return fmt.Errorf("routing %s via %s (node %s): %w", dst, via, n.Name, err)
	}
	return nil
}
