//go:build linux

package tcpstate

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestRemoveBackendForgetsItsConnections: a connection open to a backend
// has state in `conns` on both sides; once the backend is removed, its
// close no longer matches, so RemoveBackend itself must delete that state,
// and only that (another backend's connection keeps its own).
func TestRemoveBackendForgetsItsConnections(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	tr, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	open := func() (netip.AddrPort, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(ln.Addr().String())
		if err := tr.AddBackend(ap); err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ap.String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return ap, func() { c.Close(); s.Close(); ln.Close() }
	}
	removed, closeRemoved := open()
	defer closeRemoved()
	kept, closeKept := open()
	defer closeKept()

	states := func(ap netip.AddrPort) int {
		var k uint64
		var c tcpstateConn
		n, it := 0, tr.maps.Conns.Iterate()
		for it.Next(&k, &c) {
			if c.Ep.ServerAddr == ap.Addr().As16() && c.Ep.ServerPort == ap.Port() && c.Flags&uint8(tcpstateConnFlagFLAG_CLOSED) == 0 {
				n++
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Second)
	for states(removed) < 2 || states(kept) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("states before the removal: %d and %d, want 2 each (client and server side)", states(removed), states(kept))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.RemoveBackend(removed); err != nil {
		t.Fatal(err)
	}
	if n, k := states(removed), states(kept); n != 0 || k != 2 {
		t.Fatalf("after removing %s: %d states left of its connection, %d of the other backend's; want 0 and 2", removed, n, k)
	}
}
