//go:build linux

package dataplane

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// TestBranchENIBackend: a pod with security groups for pods sits behind a
// VLAN device on the node (a branch ENI on the trunk), reached through a
// routing table an ip rule selects, not behind a veth in the main table.
// The data plane finds that device from the route and traces the API
// server's handshakes to the pod there.
func TestBranchENIBackend(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF programs and network namespaces")
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.NewBranch("branch", netip.MustParseAddr("10.0.79.5"), 7)
	if err != nil && strings.Contains(err.Error(), "Unknown device type") {
		t.Skip("this kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q): make test-kernels runs this test on Debian's 6.1 and 6.12")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	ca, err := certs.NewCA("branch-ca")
	if err != nil {
		t.Fatal(err)
	}
	const name = "hook.ns.svc"
	cert, err := ca.Serving([]string{name}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := pod.Listen(8443)
	if err != nil {
		t.Fatal(err)
	}
	srv := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	tracer, err := handshake.Load()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		calls []callout.Call
	)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	asm := NewAssembler(Config{Log: log, Output: Output{Call: func(c callout.Call) { mu.Lock(); calls = append(calls, c); mu.Unlock() }}})
	k := NewKernel(tracer, nil, asm, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)

	backend := netip.AddrPortFrom(pod.Addr, 8443)
	if err := k.SetBackends([]Backend{{Addr: backend, Webhooks: []callout.Webhook{{Ref: callout.Ref{Name: "v.branch.example.com"}}}}}); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	ifindex := k.backends[backend]
	k.mu.Unlock()
	if ifindex != pod.IfIndex {
		t.Fatalf("traced through interface %d, want the VLAN device %s (%d)", ifindex, pod.HostLink, pod.IfIndex)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", backend.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: name})
	if err != nil {
		t.Fatalf("the API server's stand-in cannot reach the branch pod: %v", err)
	}
	conn.Close()
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.Server == backend && c.Outcome == "done" && c.TLSVersion == "1.3" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no completed handshake to the branch pod seen on %s: calls %+v", pod.HostLink, calls)
	}
}
