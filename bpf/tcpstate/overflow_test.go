//go:build linux

package tcpstate

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestRingBufferOverflowIsCounted loads the programs with a one-page ring
// buffer, makes more connections than it holds events for without reading,
// and checks that every event is either read or counted as dropped.
func TestRingBufferOverflowIsCounted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	tr, err := load(func(spec *ebpf.CollectionSpec) { spec.Maps["events"].MaxEntries = 4096 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	// Loopback: client and server sockets are both on this host, so every
	// connection gives two events, the close of each side (syn and
	// established are counted, not sent).
	perConn := uint64(2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := tr.AddBackend(netip.MustParseAddrPort(ln.Addr().String())); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	const conns = 60
	for range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c) // the server's FIN
		c.Close()
	}

	// Read what the ring holds, until it has been empty for a while.
	read, readRetransmits := 0, uint64(0)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tr.reader.SetDeadline(time.Now().Add(200 * time.Millisecond))
		rec, err := tr.reader.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c, err := tr.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if uint64(read)+c.EventsDropped >= conns*perConn {
				break
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		e, err := DecodeEvent(rec.RawSample)
		if err != nil {
			t.Fatal(err)
		}
		read++
		if e.Kind == KindRetransmit {
			readRetransmits++
		}
	}
	c, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// A slow machine (the emulated VMs of make test-kernels) sometimes
	// re-sends a FIN: each retransmission the program saw may add one
	// retransmit event (at a connection's 1st, 2nd, 4th... one), so the
	// total lies between the plain count plus the retransmit events read
	// and the plain count plus every retransmission. With none (the usual
	// case) it is exact.
	retransmits := c.Matched[ProgramRetransmit]
	t.Logf("%d events read (%d retransmits), %d counted as dropped, ring of %d bytes (%d-byte events); %d retransmissions seen",
		read, readRetransmits, c.EventsDropped, 4096, EventSize, retransmits)
	if c.EventsDropped == 0 {
		t.Fatalf("no drop counted with %d events for a ring of 4096 bytes", conns*perConn)
	}
	low, high := conns*perConn+readRetransmits, conns*perConn+retransmits
	if got := uint64(read) + c.EventsDropped; got < low || got > high {
		t.Errorf("read %d + dropped %d = %d, want %d to %d (%d per connection, %d retransmissions): events went missing uncounted",
			read, c.EventsDropped, got, low, high, perConn, retransmits)
	}
}
