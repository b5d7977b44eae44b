//go:build linux

package handshake

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// These tests feed crafted segments to the loaded program with
// BPF_PROG_TEST_RUN: the real program in the real kernel, on inputs no live
// connection would produce (split and malformed records, gaps, garbage).

var (
	testClient = netip.MustParseAddrPort("192.0.2.10:40000")
	testServer = netip.MustParseAddrPort("10.0.250.100:8443")
)

const tcActUnspec = ^uint32(0) // TC_ACT_UNSPEC (-1): tcx "next"

type progRig struct {
	tr     *Tracer
	seq    [2]uint32 // next sequence number per direction
	reader *ringbuf.Reader
	// inject, if set, delivers a frame instead of BPF_PROG_TEST_RUN
	// (TestProgramPagedHeaders: through a tap device).
	inject func(testing.TB, []byte)
}

func newProgRig(t testing.TB) *progRig {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	tr, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.AddBackend(testServer); err != nil {
		t.Fatal(err)
	}
	return &progRig{tr: tr, seq: [2]uint32{1000, 5000}, reader: tr.reader}
}

const (
	finFlag = 0x01
	synFlag = 0x02
	rstFlag = 0x04
	pshFlag = 0x08
	ackFlag = 0x10
)

// segment builds an Ethernet/IPv4/TCP frame.
func segment(from, to netip.AddrPort, seq uint32, flags uint8, payload []byte) []byte {
	b := make([]byte, 14+20+20+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+20+len(payload)))
	ip[8] = 64
	ip[9] = 6 // TCP
	s, d := from.Addr().As4(), to.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], from.Port())
	binary.BigEndian.PutUint16(tcp[2:], to.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = flags
	copy(tcp[20:], payload)
	return b
}

// send runs the program on one segment in direction dir (0: to the
// server) and advances that direction's sequence number.
func (r *progRig) send(t testing.TB, dir int, flags uint8, payload []byte) {
	t.Helper()
	from, to := testClient, testServer
	if dir == 1 {
		from, to = testServer, testClient
	}
	frame := segment(from, to, r.seq[dir], flags, payload)
	if r.inject != nil {
		r.inject(t, frame)
	} else {
		ret, err := r.tr.objs.Handshake.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatalf("running the program: %v", err)
		}
		if ret != tcActUnspec {
			t.Fatalf("program returned %d, want TC_ACT_UNSPEC: it must never change a packet's fate", int32(ret))
		}
	}
	r.seq[dir] += uint32(len(payload))
	if flags&(synFlag|finFlag) != 0 {
		r.seq[dir]++
	}
}

// events drains the ring buffer.
func (r *progRig) events(t testing.TB) []Event {
	t.Helper()
	var out []Event
	for {
		// The program ran synchronously: its events are in the ring already.
		r.reader.SetDeadline(time.Now())
		rec, err := r.reader.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatalf("reading ring buffer: %v", err)
		}
		e, err := DecodeEvent(rec.RawSample)
		if err != nil {
			t.Fatalf("the program wrote an event user space cannot decode: %v", err)
		}
		out = append(out, e)
	}
}

func kinds(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind.String())
	}
	return out
}

func record(typ byte, body []byte) []byte {
	r := []byte{typ, 3, 3, 0, 0}
	binary.BigEndian.PutUint16(r[3:], uint16(len(body)))
	return append(r, body...)
}

func clientHello() []byte { return record(22, append([]byte{1, 0, 0, 40}, make([]byte, 40)...)) }

// serverHello with the given cipher suite and a 32-byte session id.
func serverHello(cipher uint16) []byte {
	body := []byte{2, 0, 0, 70, 3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 32)
	body = append(body, make([]byte, 32)...) // session id
	body = binary.BigEndian.AppendUint16(body, cipher)
	body = append(body, 0)
	return record(22, body)
}

func (r *progRig) handshakeToServerFlight(t testing.TB, cipher uint16) {
	r.send(t, 0, synFlag, nil)
	r.send(t, 1, synFlag|ackFlag, nil)
	r.send(t, 0, ackFlag|pshFlag, clientHello())
	flight := append(serverHello(cipher), record(20, []byte{1})...)
	flight = append(flight, record(23, make([]byte, 900))...)
	r.send(t, 1, ackFlag|pshFlag, flight)
}

func (r *progRig) counters(t testing.TB) Counters {
	c, err := r.tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProgramTLS13EncryptedAlertIsARejection(t *testing.T) {
	r := newProgRig(t)
	r.handshakeToServerFlight(t, 0x1301)
	r.send(t, 0, ackFlag|pshFlag, append(record(20, []byte{1}), record(23, make([]byte, 19))...))
	es := r.events(t)
	last := es[len(es)-1]
	if last.Kind != KindHandshakeRejected || !last.EncryptedAlert || !last.TLS13 || last.Cipher != 0x1301 {
		t.Fatalf("events %v; last %+v, want a TLS 1.3 rejection with an encrypted alert", kinds(es), last)
	}
	if last.Client != testClient || last.Server != testServer {
		t.Errorf("client %s server %s", last.Client, last.Server)
	}
}

func TestProgramClientFinishedIsNoRejection(t *testing.T) {
	r := newProgRig(t)
	r.handshakeToServerFlight(t, 0x1302)
	r.send(t, 0, ackFlag|pshFlag, record(23, make([]byte, 53))) // Finished
	r.send(t, 0, ackFlag|finFlag, nil)
	for _, e := range r.events(t) {
		if e.Kind == KindHandshakeRejected {
			t.Fatalf("a completed handshake reported as rejected: %v", kinds(r.events(t)))
		}
	}
}

func TestProgramCloseAfterServerFlightIsARejection(t *testing.T) {
	r := newProgRig(t)
	r.handshakeToServerFlight(t, 0x1301)
	r.send(t, 0, ackFlag|finFlag, nil)
	es := r.events(t)
	var rejected bool
	for _, e := range es {
		if e.Kind == KindHandshakeRejected {
			rejected = !e.EncryptedAlert && !e.FromServer
		}
	}
	if !rejected {
		t.Fatalf("events %v, want a rejection without an alert", kinds(es))
	}
}

func TestProgramRecordSpanningSegments(t *testing.T) {
	r := newProgRig(t)
	r.send(t, 0, synFlag, nil)
	r.send(t, 1, synFlag|ackFlag, nil)
	r.send(t, 0, ackFlag, clientHello())
	// The ServerHello comes after a record whose body spans two segments;
	// the program must skip by length and find the next header.
	padding := record(22, append([]byte{99, 0, 1, 0}, make([]byte, 252)...)) // unknown handshake type
	r.send(t, 1, ackFlag, padding[:100])
	r.send(t, 1, ackFlag, append(padding[100:], serverHello(0x1303)...))
	es := r.events(t)
	if len(es) == 0 || es[len(es)-1].Kind != KindServerHello || es[len(es)-1].Cipher != 0x1303 {
		t.Fatalf("events %v, want the ServerHello found after the spanning record", kinds(es))
	}
}

func TestProgramCountsWhatItCannotTrust(t *testing.T) {
	cases := []struct {
		name  string
		send  func(r *progRig)
		count func(c Counters) uint64
	}{
		{"malformed record header", func(r *progRig) {
			r.send(t, 0, ackFlag, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, func(c Counters) uint64 { return c.MalformedRecords }},
		{"record header split across segments", func(r *progRig) {
			ch := clientHello()
			r.send(t, 0, ackFlag, append(ch, 22, 3)) // a ClientHello, then 2 bytes of the next header
		}, func(c Counters) uint64 { return c.SplitRecords }},
		{"gap in the sequence", func(r *progRig) {
			r.seq[0] += 1000
			r.send(t, 0, ackFlag, clientHello())
		}, func(c Counters) uint64 { return c.OutOfOrder }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newProgRig(t)
			r.send(t, 0, synFlag, nil)
			r.send(t, 1, synFlag|ackFlag, nil)
			before := c.count(r.counters(t))
			c.send(r)
			if after := c.count(r.counters(t)); after != before+1 {
				t.Fatalf("counter went %d -> %d, want +1", before, after)
			}
			// Nothing after an untrusted segment is parsed in that direction.
			r.events(t)
			r.send(t, 0, ackFlag, clientHello())
			if es := r.events(t); len(es) != 0 {
				t.Fatalf("parsed %v after an untrusted segment", kinds(es))
			}
		})
	}
}

// FuzzProgram sends arbitrary payloads both ways through a connection to a
// traced backend. The program must pass every packet on and write only
// events user space decodes. Run longer with `make fuzz`.
func FuzzProgram(f *testing.F) {
	f.Add(clientHello(), append(serverHello(0x1301), record(23, make([]byte, 40))...), record(23, make([]byte, 19)))
	f.Add([]byte{22, 3, 1, 0xff, 0xff}, []byte{21, 3, 3, 0, 2, 2, 45}, []byte{})
	f.Add(append(clientHello(), clientHello()...), serverHello(0xc02f), record(21, []byte{2, 42}))
	r := newProgRig(f)
	f.Fuzz(func(t *testing.T, c1, s1, c2 []byte) {
		// BPF_PROG_TEST_RUN takes at most about a page of packet data.
		if len(c1) > 3000 || len(s1) > 3000 || len(c2) > 3000 {
			return
		}
		r.seq = [2]uint32{r.seq[0] + 100000, r.seq[1] + 100000}
		r.send(t, 0, synFlag, nil)
		r.send(t, 1, synFlag|ackFlag, nil)
		r.send(t, 0, ackFlag|pshFlag, c1)
		r.send(t, 1, ackFlag|pshFlag, s1)
		r.send(t, 0, ackFlag|pshFlag, c2)
		r.send(t, 0, ackFlag|finFlag, nil)
		r.send(t, 1, ackFlag|finFlag, nil)
		r.events(t)
	})
}

// TestProgramUploadThenNextRequest: the segments of a request after its
// first are not walked (an upload tells nothing), and the client's next
// request, after the answer, is found again at the start of a segment;
// a segment that starts inside a record is never taken for one.
func TestProgramUploadThenNextRequest(t *testing.T) {
	r := newProgRig(t)
	r.handshakeToServerFlight(t, 0x1301)
	r.send(t, 0, ackFlag|pshFlag, record(23, make([]byte, 53))) // Finished
	// A 15 KB request: three records over eight segments.
	var upload []byte
	for range 3 {
		upload = append(upload, record(23, make([]byte, 5000))...)
	}
	for len(upload) > 0 {
		n := min(len(upload), 2000) // a test run takes at most a page
		r.send(t, 0, ackFlag|pshFlag, upload[:n])
		upload = upload[n:]
	}
	r.send(t, 1, ackFlag|pshFlag, record(23, make([]byte, 200))) // the answer
	// A segment that starts inside a record (the tail of one the program
	// did not see begin), whose bytes could look like a record: no request.
	tail := append([]byte{23, 3, 1}, make([]byte, 300)...)
	r.send(t, 0, ackFlag|pshFlag, tail)
	r.send(t, 1, ackFlag|pshFlag, record(23, make([]byte, 200)))
	// The next request, at a segment's start.
	r.send(t, 0, ackFlag|pshFlag, record(23, make([]byte, 500)))
	r.send(t, 1, ackFlag|pshFlag, record(23, make([]byte, 200)))

	var got []string
	es := r.events(t)
	for _, e := range es {
		if e.Kind == KindRequest || e.Kind == KindResponse {
			got = append(got, e.Kind.String())
		}
	}
	want := []string{"request", "response", "request", "response"}
	if !slices.Equal(got, want) {
		t.Fatalf("requests and responses %v (events %v), want %v", got, kinds(es), want)
	}
	if c := r.counters(t); c.MalformedRecords != 0 || c.SplitRecords != 0 {
		t.Errorf("counters %+v: an upload and a resync are neither malformed nor split", c)
	}
}

// TestProgramRemovedBackendIsNoLongerTraced: removing a backend stops
// tracing its connections at once, one under way included, even while
// another backend shares its port (the program finds a connection's later
// segments in flows, not in backends).
func TestProgramRemovedBackendIsNoLongerTraced(t *testing.T) {
	r := newProgRig(t)
	other := netip.AddrPortFrom(netip.MustParseAddr("10.0.250.101"), testServer.Port())
	if err := r.tr.AddBackend(other); err != nil {
		t.Fatal(err)
	}
	r.handshakeToServerFlight(t, 0x1301)
	if err := r.tr.RemoveBackend(testServer); err != nil {
		t.Fatal(err)
	}
	r.events(t)
	r.send(t, 0, ackFlag|finFlag, nil)
	r.send(t, 0, synFlag, nil) // and a new connection
	if got := kinds(r.events(t)); len(got) != 0 {
		t.Errorf("after the backend was removed: events %v, want none", got)
	}
}
