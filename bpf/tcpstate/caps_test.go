//go:build linux

package tcpstate_test

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/tcpstate"
)

const capsChildEnv = "HOOKSCOPE_TCPSTATE_CAPS_CHILD"

// TestCapabilities runs this test binary again under setpriv(1) with only
// the named capabilities (bounding set; root's other capabilities gone) and
// checks that CAP_BPF + CAP_PERFMON is enough to load, attach and see a
// connection, and that either alone fails with the one-line hint.
func TestCapabilities(t *testing.T) {
	if os.Getenv(capsChildEnv) != "" {
		capsChild(t)
		return
	}
	needRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	for _, c := range []struct {
		caps string
		ok   bool
	}{
		{"+bpf,+perfmon", true},
		{"+bpf", false},
		{"+perfmon", false},
	} {
		cmd := exec.Command("setpriv", "--bounding-set=-all,"+c.caps, "--inh-caps=-all", "--",
			os.Args[0], "-test.run=^TestCapabilities$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), capsChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		switch {
		case c.ok && err != nil:
			t.Errorf("with %s: %v\n%s", c.caps, err, out)
		case !c.ok && err == nil:
			t.Errorf("with only %s the tracer loaded; the documented capabilities are wrong\n%s", c.caps, out)
		case !c.ok && !strings.Contains(string(out), "grant CAP_BPF and CAP_PERFMON"):
			t.Errorf("with only %s: the error does not name the capabilities:\n%s", c.caps, out)
		default:
			t.Logf("with %s: ok=%v", c.caps, c.ok)
		}
	}
}

// capsChild loads the tracer with whatever capabilities it was given and
// sees one loopback connection.
func capsChild(t *testing.T) {
	tr, err := tcpstate.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := tr.AddBackend(netip.MustParseAddrPort(ln.Addr().String())); err != nil {
		t.Fatal(err)
	}
	got := make(chan tcpstate.Event, 16)
	go func() {
		for {
			e, err := tr.Read()
			if err != nil {
				return
			}
			got <- e
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case e := <-got:
		t.Logf("saw %s %s", e.Side, e.Kind)
	case <-time.After(3 * time.Second):
		t.Fatal("no event for a loopback connection to a backend")
	}
}
