//go:build linux

package tcpstate_test

import (
	"crypto/tls"
	"io"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/tcpstate"
)

// TestTransitionsAreCounted: as the agent loads them, the programs count a
// connection's syn and established and send no record of them; each socket
// still sends its close, with the start and duration the syn would have
// said.
func TestTransitionsAreCounted(t *testing.T) {
	loadTracer = tcpstate.Load
	defer func() { loadTracer = tcpstate.LoadWithTransitions }()
	r := newRig(t, "10.0.77.40")
	r.serveTLS(backendPort, func(c *tls.Conn) { io.Copy(io.Discard, c) })
	before, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	_, c := r.clientClosesFirst()
	c = r.drain(c, 200*time.Millisecond)
	for _, side := range []tcpstate.Side{tcpstate.SideClient, tcpstate.SideServer} {
		if got := c.lifecycle(t, side); got != "close" {
			t.Errorf("%s side sent %s, want only its close", side, got)
		}
		cl, _ := c.find(side, tcpstate.KindClose)
		if side == tcpstate.SideClient && (cl.Start.IsZero() || cl.Duration <= 0) {
			t.Errorf("client close: start %s duration %s, want the connection's", cl.Start, cl.Duration)
		}
	}
	after, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Both sockets are traced; before Linux 6.15 the server's SYN_RECV
	// comes before it has its peer, and is not counted.
	wantSYNs := uint64(1)
	if r.serverSYN {
		wantSYNs = 2
	}
	if n := after.SYNs - before.SYNs; n != wantSYNs {
		t.Errorf("counted %d syns, want %d", n, wantSYNs)
	}
	if n := after.Established - before.Established; n != 2 {
		t.Errorf("counted %d established, want 2 (both sockets)", n)
	}
}
