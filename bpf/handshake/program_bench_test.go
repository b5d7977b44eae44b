//go:build linux

package handshake

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/internal/backendset"
)

// BenchmarkProgramSegment measures the TC program's own time per segment
// with BPF_PROG_TEST_RUN (the kernel's clock around the runs; no
// bpf_stats), on the kinds of segment a pod's traffic is made of:
//
//   - rejected: a segment to a port no backend listens on;
//   - other_ip_same_port: data to a backend's port at another address
//     (no flow; the backends map is read, for the SYN ledger's check of
//     connections from before tracing);
//   - bare_ack: a traced flow's ACK with no payload (not read);
//   - upload: the client's data while its request is outstanding (its
//     records are not walked);
//   - in_record: the server's data that holds no record header;
//   - record_header: the server's data that holds one (walked);
//   - syn, syn_ack: a client's SYN to a backend and the server's answer,
//     each of which updates the SYN ledger (syn also emits its connect
//     event).
//
// The last three change the flow's state, so each run gets the next
// segment and is timed on its own: bare_ack_single is a bare ACK timed the
// same way, the per-run overhead to read them against. Crafted frames are
// linear; in a real GSO segment the payload is paged, so record_header is a
// floor for the helper's copy.
func BenchmarkProgramSegment(b *testing.B) {
	r := newProgRig(b)
	r.handshakeToServerFlight(b, 0x1301)
	r.send(b, 0, ackFlag|pshFlag, record(23, make([]byte, 53))) // Finished: handshake done
	r.events(b)
	prog := r.tr.objs.Handshake

	perRun := func(b *testing.B, total time.Duration) {
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/segment")
	}
	repeat := func(b *testing.B, frame []byte) {
		_, d, err := prog.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/segment")
	}
	// once runs the next segment in direction dir (0: to the server).
	once := func(b *testing.B, dir int, payload []byte) time.Duration {
		from, to := testClient, testServer
		if dir == 1 {
			from, to = testServer, testClient
		}
		_, d, err := prog.Benchmark(segment(from, to, r.seq[dir], ackFlag|pshFlag, payload), 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		r.seq[dir] += uint32(len(payload))
		return d
	}
	const mss = 1400

	b.Run("rejected", func(b *testing.B) {
		other := netip.AddrPortFrom(testServer.Addr(), 9443)
		repeat(b, segment(testClient, other, 1, ackFlag|pshFlag, make([]byte, mss)))
	})
	// Data to a backend's port at another address (another pod serving
	// the same port number): no flow, and the backends map says no.
	b.Run("other_ip_same_port", func(b *testing.B) {
		other := netip.AddrPortFrom(netip.MustParseAddr("10.0.250.101"), testServer.Port())
		repeat(b, segment(testClient, other, 1, ackFlag|pshFlag, make([]byte, mss)))
	})
	synClient := netip.AddrPortFrom(testClient.Addr(), 40001) // a flow of its own
	b.Run("syn", func(b *testing.B) {
		repeat(b, segment(synClient, testServer, 1, synFlag, nil))
	})
	b.Run("syn_ack", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			// Untimed: the SYN, so that each SYN-ACK is the first answer.
			if _, _, err := prog.Benchmark(segment(synClient, testServer, 1, synFlag, nil), 1, nil); err != nil {
				b.Fatal(err)
			}
			_, d, err := prog.Benchmark(segment(testServer, synClient, 7000, synFlag|ackFlag, nil), 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		perRun(b, total)
	})
	b.Run("bare_ack", func(b *testing.B) {
		repeat(b, segment(testServer, testClient, r.seq[1], ackFlag, nil))
	})
	b.Run("bare_ack_single", func(b *testing.B) {
		frame := segment(testServer, testClient, r.seq[1], ackFlag, nil)
		var total time.Duration
		for range b.N {
			_, d, err := prog.Benchmark(frame, 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		perRun(b, total)
	})
	b.Run("upload", func(b *testing.B) {
		once(b, 0, record(23, make([]byte, 16000))[:mss]) // the request: outstanding from here on
		var total time.Duration
		for range b.N {
			total += once(b, 0, make([]byte, mss))
		}
		perRun(b, total)
	})
	// The server's segments are walked whether or not a request is
	// outstanding (the first record of at least 64 bytes answers it).
	left := 0 // bytes of the server's current record still to come
	b.Run("in_record", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; {
			if left < mss {
				// Untimed: the rest of this record and the next one's start.
				next := record(23, make([]byte, 16000))
				once(b, 1, append(make([]byte, left), next[:mss-left]...))
				left = len(next) - (mss - left)
				continue
			}
			total += once(b, 1, make([]byte, mss))
			left -= mss
			i++
		}
		perRun(b, total)
	})
	b.Run("record_header", func(b *testing.B) {
		for left > 0 { // untimed: the rest of in_record's last record
			n := min(left, mss)
			once(b, 1, make([]byte, n))
			left -= n
		}
		var total time.Duration
		for range b.N {
			total += once(b, 1, record(23, make([]byte, mss-5)))
		}
		perRun(b, total)
	})
	// Record walking never gave up: the figures are of the paths named.
	if c := r.counters(b); c.MalformedRecords != 0 || c.SplitRecords != 0 || c.OutOfOrder != 0 {
		b.Fatalf("counters %+v: the program stopped walking records", c)
	}
}

// BenchmarkRemoveBackend measures RemoveBackend with the flows map holding
// other connections: it reads the whole map to forget the removed
// backend's connections. Sizes: flows put in the map (65536 fills it, and
// the LRU map evicts some before it is full); a tenth of them are the
// removed backend's.
func BenchmarkRemoveBackend(b *testing.B) {
	for _, n := range []int{1024, 65536} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			r := newProgRig(b)
			other := netip.AddrPortFrom(netip.MustParseAddr("10.0.250.101"), testServer.Port())
			key := func(server netip.AddrPort, i int) handshakeFlowKey {
				k := handshakeFlowKey{ClientAddr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 16), byte(i >> 8)}).As16(), ClientPort: uint16(i)}
				sk := backendset.KeyOf(server)
				k.ServerAddr, k.ServerPort = sk.Addr, sk.Port
				return k
			}
			fill := func(server netip.AddrPort, from, to int) {
				for i := from; i < to; i++ {
					k := key(server, i)
					if err := r.tr.objs.Flows.Put(&k, &handshakeFlowState{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			mine := n / 10
			fill(other, mine, n)
			for b.Loop() {
				b.StopTimer()
				if err := r.tr.AddBackend(testServer); err != nil {
					b.Fatal(err)
				}
				fill(testServer, 0, mine)
				b.StartTimer()
				if err := r.tr.RemoveBackend(testServer); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			var k handshakeFlowKey
			var v handshakeFlowState
			removed, left, it := backendset.KeyOf(testServer), 0, r.tr.objs.Flows.Iterate()
			for it.Next(&k, &v) {
				if k.ServerAddr == removed.Addr && k.ServerPort == removed.Port {
					b.Fatalf("a flow of the removed backend is left: %+v", k)
				}
				left++
			}
			b.ReportMetric(float64(left), "flows-left")
		})
	}
}
