//go:build linux

package handshake_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/handshake"
)

// ledgerOf returns the ledger's entry for the rig's backend and own flag.
func (r *rig) ledgerOf(own bool) (handshake.LedgerEntry, bool) {
	r.t.Helper()
	entries, err := r.tracer.Ledger()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range entries {
		if e.Server == netip.AddrPortFrom(r.pod.Addr, backendPort) && e.Own == own {
			return e, true
		}
	}
	return handshake.LedgerEntry{}, false
}

// dialOwn connects as the agent's probe does: the socket's port is marked
// in the kernel before the SYN leaves.
func (r *rig) dialOwn(timeout time.Duration) error {
	d := &net.Dialer{Timeout: timeout, Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			if err = unix.Bind(int(fd), &unix.SockaddrInet4{}); err != nil {
				return
			}
			sa, gerr := unix.Getsockname(int(fd))
			if gerr != nil {
				err = gerr
				return
			}
			err = r.tracer.MarkOwnPort(uint16(sa.(*unix.SockaddrInet4).Port))
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(backendPort)))
	if err == nil {
		conn.Close()
	}
	return err
}

func TestLedgerCountsSYNsAndAnswers(t *testing.T) {
	r := newRig(t, "10.0.250.30")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)
	if _, err := r.call(); err != nil {
		t.Fatal(err)
	}
	if err := r.dialOwn(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	theirs, ok := r.ledgerOf(false)
	if !ok || theirs.SYNs != 1 || theirs.Answered != 1 || theirs.Refused != 0 {
		t.Fatalf("a client's answered connection: ledger %+v (found %v), want 1 SYN, 1 answered", theirs, ok)
	}
	if theirs.LastAnswer.Before(theirs.LastSYN) || time.Since(theirs.LastSYN) > time.Minute {
		t.Errorf("times: SYN %v, answer %v", theirs.LastSYN, theirs.LastAnswer)
	}
	mine, ok := r.ledgerOf(true)
	if !ok || mine.SYNs != 1 || mine.Answered != 1 {
		t.Fatalf("the agent's own probe: ledger %+v (found %v), want 1 SYN, 1 answered, apart from the client's", mine, ok)
	}
}

func TestLedgerSeesSYNsThePodNeverAnswers(t *testing.T) {
	r := newRig(t, "10.0.250.31")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)
	// The pod's SYN-ACKs go nowhere: what a firewall at the pod does, seen
	// from the pod's interface on the host.
	if out, err := exec.Command("ip", "-n", r.pod.Name, "route", "replace", "blackhole", "default").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := r.call(); err == nil {
		t.Fatal("a call through a pod that drops its answers succeeded")
	}
	e, ok := r.ledgerOf(false)
	if !ok || e.SYNs < 2 || e.Answered != 0 || !e.LastAnswer.IsZero() {
		t.Fatalf("unanswered SYNs: ledger %+v (found %v), want the SYN and its retransmission, none answered", e, ok)
	}
}

func TestLedgerCountsRefusals(t *testing.T) {
	r := newRig(t, "10.0.250.32")
	if _, err := r.call(); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	e, ok := r.ledgerOf(false)
	if !ok || e.SYNs != 1 || e.Refused != 1 || e.Answered != 0 {
		t.Fatalf("a refused SYN: ledger %+v (found %v), want 1 SYN, 1 refused", e, ok)
	}
}

func TestLedgerNotesConnectionsFromBeforeTracing(t *testing.T) {
	r := newRig(t, "10.0.250.33")
	now := time.Now()
	r.serve(now.Add(-time.Hour), now.Add(time.Hour), 0)
	backend := netip.AddrPortFrom(r.pod.Addr, backendPort)
	if err := r.tracer.RemoveBackend(backend); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", backend.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Tracing starts with the connection already open, as when the agent
	// starts after the API server: its data has no flow, and no SYN.
	if err := r.tracer.AddBackend(backend); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("data on a connection from before tracing")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	e, ok := r.ledgerOf(false)
	if !ok || e.Untracked == 0 || e.LastUntracked.IsZero() || e.SYNs != 0 || !e.LastSYN.IsZero() {
		t.Fatalf("ledger %+v (found %v), want the untracked data and no SYN", e, ok)
	}
	// The client's next connection, from the same address: its SYN is in
	// the same entry, with its time (an agent restarted while the API
	// server held a connection once lost the time of every later SYN).
	before := time.Now()
	conn2, err := net.DialTimeout("tcp", backend.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn2.Close()
	time.Sleep(100 * time.Millisecond)
	e, ok = r.ledgerOf(false)
	if !ok || e.SYNs != 1 || e.LastSYN.Before(before.Add(-time.Second)) || e.LastAnswer.IsZero() {
		t.Fatalf("ledger %+v (found %v) after a new connection, want its SYN at %s or after, answered", e, ok, before.Format("15:04:05.000"))
	}
}
