//go:build linux

package tcpstate_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// These tests load the programs into the running kernel and drive real
// connections from the host (the API server's place) to servers in network
// namespaces (webhook pods) over veths, then assert the decoded events of
// both ends. A test that sees no event fails: every wait has a deadline.
//
// Addresses: pods in 10.0.77.0/24 (inside podnet's guarded 10.0.0.0/16) and
// fd77::/64, which v6Guard routes to unreachable so nothing can leave the
// machine; no other test uses either.

const backendPort = 8443

// loadTracer loads the programs for newRig; TestWithoutRdonlyCast swaps it.
var loadTracer = tcpstate.LoadWithTransitions

// TestWithoutRdonlyCast runs the tests whose paths read through
// bpf_rdonly_cast (a socket's own port at close and abort, the ports of a
// segment a RST answers) with the programs reading them as on a kernel
// without that kfunc (Linux < 6.2).
func TestWithoutRdonlyCast(t *testing.T) {
	loadTracer = tcpstate.LoadWithoutCast
	defer func() { loadTracer = tcpstate.LoadWithTransitions }()
	for name, test := range map[string]func(*testing.T){
		"ClientClosesFirst":   TestClientClosesFirst,
		"ServerClosesFirst":   TestServerClosesFirst,
		"ClosedPortIsRefused": TestClosedPortIsRefused,
		"ResetMidCall":        TestResetMidCall,
		"IPv6":                TestIPv6,
	} {
		t.Run(name, test)
	}
}

type rig struct {
	t      *testing.T
	tracer *tcpstate.Tracer
	// What this kernel shows, decided by the kernel's BTF (features) or,
	// where BTF cannot tell, by the kernel's own text trace (serverSYN).
	features  tcpstate.Features
	serverSYN bool
	pod       *podnet.Pod
	ca        *certs.CA
	local     netip.Addr // the client's address, when the test picks it
	events    chan tcpstate.Event
}

var serverSYN = sync.OnceValues(tcpstate.ServerSYNHasPeer)

func needRoot(tb testing.TB) {
	if os.Geteuid() != 0 {
		tb.Skip("loading BPF programs and creating network namespaces needs root")
	}
}

func newRig(t *testing.T, podIP string) *rig {
	t.Helper()
	needRoot(t)
	addr := netip.MustParseAddr(podIP)
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.New("tcpst", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.Close() })
	r := &rig{t: t, pod: pod, events: make(chan tcpstate.Event, 4096)}
	if addr.Is6() {
		r.local = podnet.HostAddr6 // podnet gives the host side of the veth this address
	}
	tr, err := loadTracer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	r.tracer = tr
	r.features = tr.Features()
	if r.serverSYN, err = serverSYN(); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddBackend(netip.AddrPortFrom(addr, backendPort)); err != nil {
		t.Fatal(err)
	}
	if r.ca, err = certs.NewCA("hookscope-test-ca"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			e, err := tr.Read()
			if err != nil {
				close(r.events)
				return
			}
			r.events <- e
		}
	}()
	return r
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// serveTLS accepts TLS connections on port in the pod and hands each one,
// after its handshake, to handle.
func (r *rig) serveTLS(port int, handle func(*tls.Conn)) {
	r.t.Helper()
	now := time.Now()
	cert, err := r.ca.Serving([]string{"webhook.default.svc"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		r.t.Fatal(err)
	}
	ln, err := r.pod.Listen(port)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ln.Close() })
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() == nil {
					handle(tc)
				}
				tc.Close()
			}()
		}
	}()
}

// dial opens a TCP connection from the host to the pod, from r.local if set.
func (r *rig) dial(port int, timeout time.Duration) (*net.TCPConn, error) {
	d := &net.Dialer{Timeout: timeout}
	if r.local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: r.local.AsSlice()}
	}
	c, err := d.Dial("tcp", netip.AddrPortFrom(r.pod.Addr, uint16(port)).String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// tlsClient makes the TLS handshake as the API server would (ServerName of
// the Service, roots = the caBundle).
func (r *rig) tlsClient(c net.Conn) *tls.Conn {
	r.t.Helper()
	tc := tls.Client(c, &tls.Config{ServerName: "webhook.default.svc", RootCAs: r.ca.Pool()})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("TLS handshake: %v", err)
	}
	return tc
}

// conn is what the tracer reported about one connection, by side.
type conn struct {
	client, server []tcpstate.Event
}

func (c conn) String() string {
	var b strings.Builder
	for _, side := range [][]tcpstate.Event{c.client, c.server} {
		for _, e := range side {
			fmt.Fprintf(&b, "\n  %s %s %s->%s %s client=%s closed_by=%s retrans=%d", e.Side, e.Kind, e.OldState, e.NewState,
				e.Duration, e.Client, e.ClosedBy, e.Retransmits)
		}
	}
	return b.String()
}

func (c conn) find(side tcpstate.Side, kind tcpstate.EventKind) (tcpstate.Event, bool) {
	es := c.server
	if side == tcpstate.SideClient {
		es = c.client
	}
	for _, e := range es {
		if e.Kind == kind {
			return e, true
		}
	}
	return tcpstate.Event{}, false
}

// lifecycle is kinds without the retransmit events, each of which
// checkRetransmits holds to the count the side's close reports: a slow
// machine (the emulated VMs of make test-kernels) sometimes re-sends a FIN
// or a segment of an otherwise plain connection, which the tracer rightly
// reports.
func (c conn) lifecycle(t *testing.T, side tcpstate.Side) string {
	t.Helper()
	checkRetransmits(t, c, side)
	var out []string
	for _, k := range c.kinds(side) {
		if k != tcpstate.KindRetransmit.String() {
			out = append(out, k)
		}
	}
	return strings.Join(out, ",")
}

// checkRetransmits: a side's retransmit events are those at its 1st, 2nd,
// 4th, 8th... retransmission, no more and no fewer than its close's count
// calls for.
func checkRetransmits(t *testing.T, c conn, side tcpstate.Side) {
	t.Helper()
	es := c.server
	if side == tcpstate.SideClient {
		es = c.client
	}
	var got []uint32
	var total uint32
	for _, e := range es {
		switch e.Kind {
		case tcpstate.KindRetransmit:
			got = append(got, e.Retransmits)
		case tcpstate.KindClose:
			total = e.Retransmits
		}
	}
	var want []uint32
	for n := uint32(1); n <= total; n *= 2 {
		want = append(want, n)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s side: retransmit events at %v, want %v for the close's %d:%v", side, got, want, total, c)
	}
}

func (c conn) kinds(side tcpstate.Side) []string {
	es := c.server
	if side == tcpstate.SideClient {
		es = c.client
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Kind.String())
	}
	return out
}

// collect gathers the events of the connection from client port port (0:
// any) until done says it has all, or fails after 5 s. A client's syn has
// port 0 (not bound yet); it joins its connection by the socket cookie.
func (r *rig) collect(port uint16, done func(conn) bool) conn {
	r.t.Helper()
	var c conn
	var pending []tcpstate.Event // client syns not yet joined
	cookies := map[uint64]bool{}
	timeout := time.After(5 * time.Second)
	for !done(c) {
		select {
		case e, ok := <-r.events:
			if !ok {
				r.t.Fatalf("event reader stopped; saw %v", c)
			}
			if e.Side == tcpstate.SideClient && e.Kind == tcpstate.KindSYN {
				pending = append(pending, e)
				continue
			}
			if port != 0 && e.Client.Port() != port {
				continue
			}
			if e.Side == tcpstate.SideClient {
				if !cookies[e.Cookie] {
					cookies[e.Cookie] = true
					for _, p := range pending {
						if p.Cookie == e.Cookie {
							c.client = append(c.client, p)
						}
					}
				}
				c.client = append(c.client, e)
			} else {
				c.server = append(c.server, e)
			}
		case <-timeout:
			r.t.Fatalf("events for client port %d incomplete after 5s:%v", port, c)
		}
	}
	return c
}

// closedBoth: both sockets reported their close.
func closedBoth(c conn) bool {
	_, a := c.find(tcpstate.SideClient, tcpstate.KindClose)
	_, b := c.find(tcpstate.SideServer, tcpstate.KindClose)
	return a && b
}

func localPort(c net.Conn) uint16 { return uint16(c.LocalAddr().(*net.TCPAddr).Port) }

// serverKinds is what the server side reports of a connection, given what
// the kernel shows: without ServerSYNHasPeer the server side starts at
// established.
func (r *rig) serverKinds(kinds string) string {
	if r.serverSYN {
		return kinds
	}
	return strings.TrimPrefix(kinds, "syn,")
}

// checkNormal asserts syn, established and close on both sides (the
// server's syn where the kernel shows it), the close with a start and a
// duration, no resets and the expected closer.
func checkNormal(t *testing.T, r *rig, c conn, port uint16, closer tcpstate.Side) {
	t.Helper()
	for _, side := range []tcpstate.Side{tcpstate.SideClient, tcpstate.SideServer} {
		want := "syn,established,close"
		if side == tcpstate.SideServer {
			want = r.serverKinds(want)
		}
		if got := c.lifecycle(t, side); got != want {
			t.Errorf("%s side events %s, want %s:%v", side, got, want, c)
		}
		syn, hasSyn := c.find(side, tcpstate.KindSYN)
		est, _ := c.find(side, tcpstate.KindEstablished)
		cl, _ := c.find(side, tcpstate.KindClose)
		wantSyn := tcpstate.StateSynSent
		if side == tcpstate.SideServer {
			wantSyn = tcpstate.StateSynRecv
		}
		if (hasSyn && syn.NewState != wantSyn) || est.OldState != wantSyn || est.NewState != tcpstate.StateEstablished {
			t.Errorf("%s side: syn ->%s, established %s->%s", side, syn.NewState, est.OldState, est.NewState)
		}
		server := netip.AddrPortFrom(r.pod.Addr, backendPort)
		first := est // the socket's first event carries the cookie the others must share
		if hasSyn {
			first = syn
		}
		if hasSyn && side == tcpstate.SideServer && (syn.Server != server || syn.Client != est.Client) {
			t.Errorf("server syn: client %s server %s, want the established's %s and %s", syn.Client, syn.Server, est.Client, server)
		}
		for _, e := range []tcpstate.Event{est, cl} {
			if e.Server != server || e.Client.Port() != port || e.Side != side {
				t.Errorf("%s %s: client %s server %s side %s, want client port %d server %s", side, e.Kind, e.Client, e.Server, e.Side, port, server)
			}
			if e.Cookie == 0 || e.Cookie != first.Cookie {
				t.Errorf("%s %s: cookie %d, first event's %d", side, e.Kind, e.Cookie, first.Cookie)
			}
		}
		if cl.ClosedBy != closer {
			t.Errorf("%s side close: closed by %s, want %s", side, cl.ClosedBy, closer)
		}
		if cl.Duration <= 0 || cl.Duration > 5*time.Second || cl.Start.IsZero() || !cl.Time.After(cl.Start) {
			t.Errorf("%s side close: duration %v start %v time %v", side, cl.Duration, cl.Start, cl.Time)
		}
		if !cl.Established || cl.ResetReceived || cl.ResetSent || cl.NewState != tcpstate.StateClose {
			t.Errorf("%s side close: %+v", side, cl)
		}
		if d := time.Since(cl.Time); d < 0 || d > time.Minute {
			t.Errorf("%s side close: wall time %v is %v from now", side, cl.Time, d)
		}
	}
}

func TestClientClosesFirst(t *testing.T) {
	r := newRig(t, "10.0.77.2")
	r.serveTLS(backendPort, func(c *tls.Conn) {
		io.Copy(io.Discard, c) // until the client's close_notify
	})
	port, c := r.clientClosesFirst()
	checkNormal(t, r, c, port, tcpstate.SideClient)
}

// clientClosesFirst makes one call whose client closes first, and returns
// its client port and events once both sockets closed.
func (r *rig) clientClosesFirst() (uint16, conn) {
	r.t.Helper()
	raw, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	port := localPort(raw)
	tc := r.tlsClient(raw)
	tc.Write([]byte("review"))
	// The client's FIN, with no close_notify before it: the server closes
	// when it reads the end of the stream, so it cannot close first (with
	// a close_notify first it sometimes did, before the FIN left).
	raw.CloseWrite()
	io.Copy(io.Discard, tc) // the server's FIN
	raw.Close()
	return port, r.collect(port, closedBoth)
}

func TestServerClosesFirst(t *testing.T) {
	r := newRig(t, "10.0.77.3")
	r.serveTLS(backendPort, func(c *tls.Conn) {
		c.Write([]byte("allowed"))
	}) // then the server closes
	raw, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := localPort(raw)
	tc := r.tlsClient(raw)
	io.Copy(io.Discard, tc) // until the server's close_notify
	// Then until its FIN, which follows the alert: closing at the alert
	// raced the server's own close (seen once in a few runs).
	io.Copy(io.Discard, raw)
	// Not tc.Close: a close_notify to a closed server socket earns a RST.
	raw.Close()
	c := r.collect(port, closedBoth)
	checkNormal(t, r, c, port, tcpstate.SideServer)
}

func TestIPv6(t *testing.T) {
	r := newRig(t, "fd77::2")
	r.serveTLS(backendPort, func(c *tls.Conn) {
		c.Write([]byte("allowed"))
	})
	raw, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := localPort(raw)
	tc := r.tlsClient(raw)
	io.Copy(io.Discard, tc)  // until the server's close_notify
	io.Copy(io.Discard, raw) // and its FIN (see TestServerClosesFirst)
	raw.Close()
	c := r.collect(port, closedBoth)
	checkNormal(t, r, c, port, tcpstate.SideServer)
	if cl, _ := c.find(tcpstate.SideClient, tcpstate.KindClose); cl.Client.Addr() != r.local {
		t.Errorf("client address %s, want %s", cl.Client.Addr(), r.local)
	}
}

func TestClosedPortIsRefused(t *testing.T) {
	r := newRig(t, "10.0.77.4") // the backend port has no listener
	if _, err := r.dial(backendPort, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a closed port: %v, want connection refused", err)
	}
	// The failed dial does not tell its port: this rig has only this client.
	// The backend's node reports the refusal where tcp_send_reset fires for
	// a RST sent with no socket (Linux >= 6.10).
	c := r.collect(0, func(c conn) bool {
		_, a := c.find(tcpstate.SideClient, tcpstate.KindClose)
		_, b := c.find(tcpstate.SideServer, tcpstate.KindRefused)
		return a && (b || !r.features.ResetWithoutSocket)
	})
	if got := c.lifecycle(t, tcpstate.SideClient); got != "syn,refused,close" {
		t.Errorf("client side events %s, want syn,refused,close:%v", got, c)
	}
	ref, _ := c.find(tcpstate.SideClient, tcpstate.KindRefused)
	if ref.OldState != tcpstate.StateSynSent || ref.Server != netip.AddrPortFrom(r.pod.Addr, backendPort) {
		t.Errorf("client refused: %+v", ref)
	}
	cl, _ := c.find(tcpstate.SideClient, tcpstate.KindClose)
	if cl.Established || !cl.ResetReceived || cl.ClosedBy != tcpstate.SideServer || cl.OldState != tcpstate.StateSynSent {
		t.Errorf("client close after refusal: %+v", cl)
	}
	if !r.features.ResetWithoutSocket {
		// Nothing to see on the server side: make sure nothing comes.
		c = r.drain(c, 300*time.Millisecond)
		if len(c.server) != 0 {
			t.Errorf("server side reported a refusal this kernel does not trace:%v", c)
		}
		return
	}
	wantReason := "NO_SOCKET"
	if !r.features.ResetReasons {
		wantReason = ""
	}
	srv, _ := c.find(tcpstate.SideServer, tcpstate.KindRefused)
	if srv.Cookie != 0 || srv.ResetReason != wantReason || srv.Client != ref.Client || srv.Server != ref.Server {
		t.Errorf("server refused: %+v, want no socket, reason %q, client %s", srv, wantReason, ref.Client)
	}
}

// drain adds to c what arrives for d more (any client port).
func (r *rig) drain(c conn, d time.Duration) conn {
	timeout := time.After(d)
	for {
		select {
		case e, ok := <-r.events:
			if !ok {
				return c
			}
			if e.Side == tcpstate.SideClient {
				c.client = append(c.client, e)
			} else {
				c.server = append(c.server, e)
			}
		case <-timeout:
			return c
		}
	}
}

func TestResetMidCall(t *testing.T) {
	r := newRig(t, "10.0.77.5")
	r.serveTLS(backendPort, func(c *tls.Conn) {
		c.Read(make([]byte, 16))
		// Abort: SO_LINGER 0 turns close into a RST (and no close_notify first).
		tcp := c.NetConn().(*net.TCPConn)
		tcp.SetLinger(0)
		tcp.Close()
	})
	raw, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := localPort(raw)
	tc := r.tlsClient(raw)
	tc.Write([]byte("review"))
	if _, err := tc.Read(make([]byte, 16)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the server's abort: %v, want connection reset", err)
	}
	raw.Close()
	c := r.collect(port, func(c conn) bool {
		_, ok := c.find(tcpstate.SideServer, tcpstate.KindResetSent)
		return ok && closedBoth(c)
	})
	if got, want := c.lifecycle(t, tcpstate.SideServer), r.serverKinds("syn,established,close,reset_sent"); got != want {
		t.Errorf("server side events %s, want %s (the kernel closes, then sends the RST):%v", got, want, c)
	}
	if got := c.lifecycle(t, tcpstate.SideClient); got != "syn,established,reset_received,close" {
		t.Errorf("client side events %s, want syn,established,reset_received,close:%v", got, c)
	}
	sent, _ := c.find(tcpstate.SideServer, tcpstate.KindResetSent)
	if !sent.ResetSent || !sent.Established || sent.ClosedBy != tcpstate.SideServer || sent.Duration <= 0 ||
		sent.Client.Port() != port {
		t.Errorf("server reset_sent: %+v", sent)
	}
	// A reason where the tracepoint passes one (Linux >= 6.10), none before.
	if r.features.ResetReasons != (sent.ResetReason != "") || (!r.features.ResetReasons && sent.ResetReasonCode != 0) {
		t.Errorf("server reset_sent: reason %q (%d) on a kernel whose tcp_send_reset passes one: %v", sent.ResetReason, sent.ResetReasonCode, r.features.ResetReasons)
	}
	t.Logf("reset reason: %s (%d)", sent.ResetReason, sent.ResetReasonCode)
	got, _ := c.find(tcpstate.SideClient, tcpstate.KindResetReceived)
	if got.OldState != tcpstate.StateEstablished || got.ClosedBy != tcpstate.SideServer {
		t.Errorf("client reset_received: %+v", got)
	}
	for _, side := range []tcpstate.Side{tcpstate.SideClient, tcpstate.SideServer} {
		cl, _ := c.find(side, tcpstate.KindClose)
		if !cl.Established || cl.ClosedBy != tcpstate.SideServer || cl.Duration <= 0 || cl.OldState != tcpstate.StateEstablished {
			t.Errorf("%s close: %+v", side, cl)
		}
	}
	if cl, _ := c.find(tcpstate.SideClient, tcpstate.KindClose); !cl.ResetReceived {
		t.Errorf("client close does not carry the reset: %+v", cl)
	}
}

// blackhole drops, inside the pod, everything it would send to addr (its
// ACKs and SYN-ACKs to the client): the client's kernel retransmits.
func blackhole(tb testing.TB, pod *podnet.Pod, addr netip.Addr) (restore func()) {
	tb.Helper()
	fam, bits := "-4", "/32"
	if addr.Is6() {
		fam, bits = "-6", "/128"
	}
	ip(tb, "-n", pod.Name, fam, "route", "add", "blackhole", addr.String()+bits)
	return func() { ip(tb, "-n", pod.Name, fam, "route", "del", "blackhole", addr.String()+bits) }
}

func TestRetransmissions(t *testing.T) {
	r := newRig(t, "10.0.77.6")
	r.serveTLS(backendPort, func(c *tls.Conn) {
		io.Copy(io.Discard, c)
	})
	raw, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	port := localPort(raw)
	tc := r.tlsClient(raw)
	clientAddr := netip.MustParseAddrPort(raw.LocalAddr().String()).Addr()
	restore := blackhole(t, r.pod, clientAddr)
	tc.Write([]byte("review")) // unacknowledged: retransmitted after the RTO
	c := r.collect(port, func(c conn) bool {
		for _, e := range c.client {
			if e.Kind == tcpstate.KindRetransmit && e.Retransmits >= 2 {
				return true
			}
		}
		return false
	})
	restore()
	tc.CloseWrite()
	raw.CloseWrite()
	if _, err := io.Copy(io.Discard, tc); err != nil {
		t.Errorf("reading to the end after the blackhole: %v", err)
	}
	raw.Close()
	c2 := r.collect(port, closedBoth)
	first, _ := c.find(tcpstate.SideClient, tcpstate.KindRetransmit)
	if first.Retransmits != 1 || first.OldState != tcpstate.StateEstablished {
		t.Errorf("first retransmit event: %+v", first)
	}
	cl, _ := c2.find(tcpstate.SideClient, tcpstate.KindClose)
	if cl.Retransmits < 2 || !cl.Established || cl.ClosedBy != tcpstate.SideClient {
		t.Errorf("client close: retransmits %d, established %v, closed by %s:%v", cl.Retransmits, cl.Established, cl.ClosedBy, c2)
	}
}

// TestServerNeverAnswersTheSYN: the pod cannot answer (its SYN-ACKs are
// dropped); the client retransmits its SYN and gives up.
func TestServerNeverAnswersTheSYN(t *testing.T) {
	r := newRig(t, "10.0.77.7")
	r.serveTLS(backendPort, func(*tls.Conn) {})
	// The client's address is the host's route source towards the pod.
	probe, err := r.dial(backendPort, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clientAddr := netip.MustParseAddrPort(probe.LocalAddr().String()).Addr()
	probe.Close()
	r.collect(localPort(probe), closedBoth)

	defer blackhole(t, r.pod, clientAddr)()
	if _, err := r.dial(backendPort, 1500*time.Millisecond); err == nil {
		t.Fatal("dial succeeded through a blackhole")
	}
	c := r.collect(0, func(c conn) bool {
		_, ok := c.find(tcpstate.SideClient, tcpstate.KindClose)
		return ok
	})
	if got := strings.Join(c.kinds(tcpstate.SideClient), ","); got != "syn,retransmit,close" {
		t.Errorf("client events %s, want syn,retransmit,close:%v", got, c)
	}
	cl, _ := c.find(tcpstate.SideClient, tcpstate.KindClose)
	if cl.Established || cl.OldState != tcpstate.StateSynSent || cl.ClosedBy != tcpstate.SideClient || cl.Retransmits < 1 ||
		cl.Duration < time.Second {
		t.Errorf("client close: %+v", cl)
	}
	if len(c.server) != 0 {
		t.Errorf("the server, which never saw the handshake complete, reported:%v", c)
	}
}

func TestNonBackendTrafficIsIgnored(t *testing.T) {
	r := newRig(t, "10.0.77.8")
	const other = 8444 // a port of the same pod that is no backend
	r.serveTLS(other, func(c *tls.Conn) { c.Write([]byte("x")) })
	before, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		raw, err := r.dial(other, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.tlsClient(raw))
		raw.Close()
	}
	r.dial(9, time.Second) // refused, on a port that is no backend
	select {
	case e := <-r.events:
		t.Errorf("event for non-backend traffic: %s %s client %s server %s", e.Side, e.Kind, e.Client, e.Server)
	case <-time.After(300 * time.Millisecond):
	}
	after, err := r.tracer.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tcpstate.Programs {
		if after.Matched[p] != before.Matched[p] {
			t.Errorf("%s: non-backend runs counted as matched: %d -> %d", p, before.Matched[p], after.Matched[p])
		}
	}
}
