//go:build linux

package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// These tests load the handshake programs, let the Kernel attach them where
// a backend's packets cross, and drive real TLS handshakes to it from the
// host, as the API server would.

const testServerName = "hook.ns.svc"

// serveTLS serves TLS handshakes on ln with a certificate ca signed, until
// the test ends.
func serveTLS(t *testing.T, ln net.Listener) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("kernel-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Serving([]string{testServerName}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	t.Cleanup(func() { srv.Close() })
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ca
}

// tracing is a Kernel with the handshake programs loaded, and the calls
// its Assembler reports.
type tracing struct {
	k     *Kernel
	mu    sync.Mutex
	calls []callout.Call
}

func newTracing(t *testing.T) *tracing {
	t.Helper()
	tracer, err := handshake.Load()
	if err != nil {
		t.Fatal(err)
	}
	tr := &tracing{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	asm := NewAssembler(Config{Log: log, Output: Output{Call: func(c callout.Call) { tr.mu.Lock(); tr.calls = append(tr.calls, c); tr.mu.Unlock() }}})
	tr.k = NewKernel(tracer, nil, asm, log)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go tr.k.Run(ctx)
	return tr
}

// trace traces backend and returns where the Kernel attached for it.
func (tr *tracing) trace(t *testing.T, backend netip.AddrPort) []attachPoint {
	t.Helper()
	if err := tr.k.SetBackends([]Backend{{Addr: backend, Webhooks: []callout.Webhook{{Ref: callout.Ref{Name: "v.kernel.example.com"}}}}}); err != nil {
		t.Fatal(err)
	}
	tr.k.mu.Lock()
	defer tr.k.mu.Unlock()
	return tr.k.backends[backend].points
}

// handshakes makes one TLS handshake to backend and returns the calls the
// wire reported for it once one completed with TLS 1.3.
func (tr *tracing) handshakes(t *testing.T, backend netip.AddrPort, ca *certs.CA) []callout.Call {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", backend.String(), &tls.Config{RootCAs: ca.Pool(), ServerName: testServerName})
	if err != nil {
		t.Fatalf("the API server's stand-in cannot reach %s: %v", backend, err)
	}
	conn.Close()
	var mine []callout.Call
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		mine = nil
		done := false
		for _, c := range tr.calls {
			if c.Server == backend {
				mine = append(mine, c)
				done = done || (c.Outcome == "done" && c.TLSVersion == "1.3")
			}
		}
		return done, nil
	})
	if err != nil {
		t.Fatalf("no completed handshake to %s seen: calls %+v", backend, mine)
	}
	return mine
}

// needKernel skips a test where no kernel can take its programs: not root,
// or the bpf system call is missing (qemu-user, which runs the arm64 unit
// tests, does not implement it).
func needKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF programs and network interfaces")
	}
	if err := features.HaveProgramType(ebpf.SchedCLS); errors.Is(err, unix.ENOSYS) {
		t.Skipf("the bpf system call is not implemented here (%v): these tests run natively in make test and make test-kernels", err)
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
}

// TestBranchENIBackend: a pod with security groups for pods sits behind a
// VLAN device on the node (a branch ENI on the trunk), reached through a
// routing table an ip rule selects, not behind a veth in the main table.
// The data plane finds that device from the route and traces the API
// server's handshakes to the pod there.
func TestBranchENIBackend(t *testing.T) {
	needKernel(t)
	pod, err := podnet.NewBranch("branch", netip.MustParseAddr("10.0.79.5"), 7)
	if err != nil && strings.Contains(err.Error(), "Unknown device type") {
		t.Skip("this kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q): make test-kernels runs this test on Debian's 6.1 and 6.12")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	ln, err := pod.Listen(8443)
	if err != nil {
		t.Fatal(err)
	}
	ca := serveTLS(t, ln)
	tr := newTracing(t)
	backend := netip.AddrPortFrom(pod.Addr, 8443)
	if points := tr.trace(t, backend); len(points) != 1 || points[0] != (attachPoint{ifindex: pod.IfIndex}) {
		t.Fatalf("traced through %+v, want the VLAN device %s (%d)", points, pod.HostLink, pod.IfIndex)
	}
	tr.handshakes(t, backend, ca)
}

// TestHostNetworkBackend: a hostNetwork pod serves on its node's own
// address. The data plane attaches to the interface that holds it (where a
// remote API server's packets arrive) and to loopback, ingress only (where
// a client on the same host reaches it, each packet crossing twice), and
// sees each handshake once.
func TestHostNetworkBackend(t *testing.T) {
	needKernel(t)
	host, err := podnet.NewHost("hostnet", netip.MustParseAddr("10.0.78.5"))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	ln, err := host.Listen(9443)
	if err != nil {
		t.Fatal(err)
	}
	ca := serveTLS(t, ln)
	tr := newTracing(t)
	backend := netip.AddrPortFrom(host.Addr, 9443)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	want := []attachPoint{{ifindex: lo.Index, ingressOnly: true}, {ifindex: host.IfIndex}}
	if points := tr.trace(t, backend); len(points) != 2 || points[0] != want[0] || points[1] != want[1] {
		t.Fatalf("traced through %+v, want loopback's ingress and %s: %+v", points, host.HostLink, want)
	}
	calls := tr.handshakes(t, backend, ca)
	time.Sleep(200 * time.Millisecond) // a second account of the same handshake would be in by now
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.calls {
		if c.Server == backend {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d calls for one handshake (%+v): loopback must be read once per packet", n, calls)
	}
}

// TestOnNode: a pod's address behind its veth and the host's own address
// are on this node; an address routed elsewhere is not.
func TestOnNode(t *testing.T) {
	needKernel(t)
	pod, err := podnet.New("onnode", netip.MustParseAddr("10.0.77.5"))
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	host, err := podnet.NewHost("onnodehost", netip.MustParseAddr("10.0.77.9"))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	// Addresses behind the pod, as a node's routes send other nodes' pods
	// through a gateway.
	if out, err := exec.Command("ip", "route", "add", "10.0.76.0/24", "via", "10.0.77.5").CombinedOutput(); err != nil {
		t.Fatalf("ip route add: %v: %s", err, out)
	}
	defer exec.Command("ip", "route", "del", "10.0.76.0/24").Run()
	var k Kernel
	for ip, want := range map[string]bool{"10.0.77.5": true, "10.0.77.9": true, "127.0.0.1": true, "10.0.76.3": false} {
		if got := k.OnNode(netip.MustParseAddr(ip)); got != want {
			t.Errorf("OnNode(%s) = %v, want %v", ip, got, want)
		}
	}
}

// TestAddressTakenOver: a pod is deleted and a new one gets its address,
// behind a new veth. Until the agent hands the kernel the new pod, the
// address is traced at the old pod's interface, and says so; then the
// kernel traces the new interface, from then on, and sees its handshakes.
func TestAddressTakenOver(t *testing.T) {
	needKernel(t)
	addr := netip.MustParseAddr("10.0.75.5")
	backend := netip.AddrPortFrom(addr, 8443)
	podA, podB := &callout.PodRef{Namespace: "ns", Name: "hook-a"}, &callout.PodRef{Namespace: "ns", Name: "hook-b"}
	tr := newTracing(t)
	traceAs := func(pod *callout.PodRef) Tracing {
		t.Helper()
		if err := tr.k.SetBackends([]Backend{{Addr: backend, Pod: pod, Webhooks: []callout.Webhook{{Ref: callout.Ref{Name: "v.kernel.example.com"}}}}}); err != nil {
			t.Fatal(err)
		}
		got, ok := tr.k.Tracing(backend)
		if !ok || !got.SamePod(pod) {
			t.Fatalf("tracing %+v (ok %v) after handing the kernel pod %s", got, ok, pod.Name)
		}
		return got
	}

	a, err := podnet.New("takena", addr)
	if err != nil {
		t.Fatal(err)
	}
	first := traceAs(podA)
	a.Close()
	b, err := podnet.New("takenb", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, ok := tr.k.Tracing(backend); !ok || got.SamePod(podB) {
		t.Fatalf("tracing %+v (ok %v) before the kernel was handed the new pod: want the old pod's", got, ok)
	}
	ln, err := b.Listen(8443)
	if err != nil {
		t.Fatal(err)
	}
	ca := serveTLS(t, ln)
	second := traceAs(podB)
	if !second.Since.After(first.Since) {
		t.Errorf("tracing the new pod since %s, not after the old pod's %s: the ledger would speak for connections it never saw", second.Since, first.Since)
	}
	tr.handshakes(t, backend, ca)
}
