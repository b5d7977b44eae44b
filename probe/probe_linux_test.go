//go:build linux

package probe

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/podnet"
)

// TestProbeNamesAnUnansweredConnection: a backend whose packets are dropped
// on the way (here its namespace's link is down: the host's SYNs go nowhere,
// as behind a security group that admits nothing on the port) is
// ConnectTimeout, not a TLS handshake that timed out.
func TestProbeNamesAnUnansweredConnection(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace")
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.New("drop", netip.MustParseAddr("10.0.80.5"))
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	if out, err := exec.Command("ip", "-n", pod.Name, "link", "set", "eth0", "down").CombinedOutput(); err != nil {
		t.Fatalf("taking the pod's link down: %v: %s", err, out)
	}
	r := Probe(context.Background(), netip.AddrPortFrom(pod.Addr, 8443), "x.y.svc", nil, 500*time.Millisecond)
	if r.Class != findings.ConnectTimeout {
		t.Fatalf("%s, want ConnectTimeout", r)
	}
}
