//go:build linux

package handshake

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkProgramSegment measures the TC program's own time per segment
// with BPF_PROG_TEST_RUN (the kernel's clock around each run; no bpf_stats),
// on the segments a traced bulk transfer and the rest of a pod's traffic
// are made of:
//
//   - rejected: a segment to a port no backend listens on;
//   - bare_ack: a traced flow's ACK with no payload (most of what the server
//     sends during an upload);
//   - in_record: a traced flow's data segment that holds no record header;
//   - record_header: one that holds the header of the next record.
//
// Crafted frames are linear; in a real GSO segment the payload is paged,
// so the record_header case is a floor for the helper's copy.
func BenchmarkProgramSegment(b *testing.B) {
	r := newProgRig(b)
	r.handshakeToServerFlight(b, 0x1301)
	r.send(b, 0, ackFlag|pshFlag, record(23, make([]byte, 53))) // Finished: handshake done
	r.events(b)
	prog := r.tr.objs.HandshakeEgress

	repeat := func(b *testing.B, frame []byte) {
		_, d, err := prog.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "ns/segment")
	}
	b.Run("rejected", func(b *testing.B) {
		other := netip.AddrPortFrom(testServer.Addr(), 9443)
		repeat(b, segment(testClient, other, 1, ackFlag|pshFlag, make([]byte, 1400)))
	})
	b.Run("bare_ack", func(b *testing.B) {
		repeat(b, segment(testServer, testClient, r.seq[1], ackFlag, nil))
	})
	// Data segments change the flow's state: each run gets the next one.
	send := func(b *testing.B, payload []byte) time.Duration {
		frame := segment(testClient, testServer, r.seq[0], ackFlag|pshFlag, payload)
		_, d, err := prog.Benchmark(frame, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		r.seq[0] += uint32(len(payload))
		return d
	}
	const mss = 1400
	b.Run("in_record", func(b *testing.B) {
		var total time.Duration
		left := 0 // bytes of the current record still to come
		for i := 0; i < b.N; {
			if left < mss {
				// Untimed: the rest of this record and the next one's start.
				next := record(23, make([]byte, 16000))
				payload := append(make([]byte, left), next[:mss]...)
				send(b, payload)
				left = len(next) - mss
				continue
			}
			total += send(b, make([]byte, mss))
			left -= mss
			i++
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/segment")
	})
	b.Run("bare_ack_single", func(b *testing.B) {
		var total time.Duration
		frame := segment(testServer, testClient, r.seq[1], ackFlag, nil)
		for range b.N {
			_, d, _ := prog.Benchmark(frame, 1, nil)
			total += d
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/segment")
	})
	b.Run("record_header", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			total += send(b, record(23, make([]byte, mss-5)))
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/segment")
	})
}
