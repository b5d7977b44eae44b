package dataplane

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

var (
	server = netip.MustParseAddrPort("10.0.1.5:8443")
	client = netip.MustParseAddrPort("10.0.0.2:41000")
	probe  = netip.MustParseAddrPort("10.0.0.9:50000")
	hook   = callout.Webhook{Ref: callout.Ref{Kind: "Validating", Configuration: "c", Name: "v.example.com"}, FailurePolicy: "Fail", TimeoutSeconds: 2}
)

// recorder keeps what the Assembler outputs.
type recorder struct {
	mu       sync.Mutex
	failed   []findings.FailedCall
	done     int
	latency  []findings.Observation
	calls    []callout.Call
	events   map[string]int
	response []time.Duration
}

func newAssembler(t *testing.T) (*Assembler, *recorder) {
	t.Helper()
	r := &recorder{events: map[string]int{}}
	a := NewAssembler(Config{
		IsOwn:         func(c, s netip.AddrPort) bool { return c == probe },
		SlowThreshold: time.Second,
		Log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	a.SetOutput(Output{
		FailedCall:    func(_ Backend, fc findings.FailedCall) { r.mu.Lock(); r.failed = append(r.failed, fc); r.mu.Unlock() },
		HandshakeDone: func(Backend) { r.mu.Lock(); r.done++; r.mu.Unlock() },
		Latency:       func(o findings.Observation) { r.mu.Lock(); r.latency = append(r.latency, o); r.mu.Unlock() },
		Call:          func(c callout.Call) { r.mu.Lock(); r.calls = append(r.calls, c); r.mu.Unlock() },
		Event:         func(k string) { r.mu.Lock(); r.events[k]++; r.mu.Unlock() },
		Response:      func(_ callout.Ref, d time.Duration) { r.mu.Lock(); r.response = append(r.response, d); r.mu.Unlock() },
	})
	a.SetBackends([]Backend{{Addr: server, Webhooks: []callout.Webhook{hook}, Pod: &callout.PodRef{Namespace: "ns", Name: "hook-0", Node: "node-1"}}})
	return a, r
}

// handshakeTo replays the events of one TLS handshake from c, which ends
// with last.
func handshakeTo(a *Assembler, c netip.AddrPort, t0 time.Time, tls13 bool, last handshake.Event) {
	ev := func(k handshake.EventKind, dt time.Duration) handshake.Event {
		return handshake.Event{Kind: k, Client: c, Server: server, Time: t0.Add(dt), FlowStart: t0}
	}
	// As the kernel sends them: no event for the SYN (the others carry
	// its time), and a TLS 1.2 ServerHello whose bytes were copied for an
	// earlier connection: its version is what the program read.
	a.HandleTLS(ev(handshake.KindClientHello, time.Millisecond))
	sh := ev(handshake.KindServerHello, 2*time.Millisecond)
	sh.Cipher, sh.FromServer, sh.TLSVersion = 0xc02f, true, 0x0303
	if tls13 {
		sh.Cipher, sh.TLS13, sh.Hello = 0x1301, true, &handshake.Hello{Versions: []uint16{0x0304}}
	}
	a.HandleTLS(sh)
	last.Client, last.Server, last.FlowStart = c, server, t0
	if last.Time.IsZero() {
		last.Time = t0.Add(3 * time.Millisecond)
	}
	a.HandleTLS(last)
}

// TestRejectedHandshake: a TLS 1.2 client's fatal alert is a failed call
// with the kernel's typed facts, and a call span ending "rejected" with its
// TLS version read from the server's hello.
func TestRejectedHandshake(t *testing.T) {
	a, r := newAssembler(t)
	t0 := time.Now()
	handshakeTo(a, client, t0, false, handshake.Event{Kind: handshake.KindHandshakeRejected, Phase: handshake.PhaseServerFlight, AlertLevel: 2, AlertDescription: 42})
	if len(r.failed) != 1 {
		t.Fatalf("failed calls %+v, want one", r.failed)
	}
	fc := r.failed[0]
	w := fc.Evidence.Wire
	if fc.Backend != server || !fc.Started.Equal(t0) || w == nil || w.Client != client || w.TLSVersion != "1.2" || w.Phase != findings.PhaseServerHello ||
		w.Alert == nil || w.Alert.DescriptionName() != "bad_certificate" || w.Alert.LevelName() != "fatal" {
		t.Fatalf("failed call %+v (wire %+v)", fc, w)
	}
	if want := "TLS handshake rejected by client 10.0.0.2:41000: fatal alert bad_certificate (42)"; fc.Evidence.Detail != want {
		t.Errorf("detail %q, want %q", fc.Evidence.Detail, want)
	}
	if len(r.calls) != 1 || r.calls[0].Outcome != "rejected" || r.calls[0].TLSVersion != "1.2" || r.calls[0].Pod.Name != "hook-0" ||
		len(r.calls[0].Webhooks) != 1 || len(r.calls[0].Events) != 4 {
		t.Fatalf("calls %+v", r.calls)
	}
	// Its first step is the connection's start, which no event said.
	if first := r.calls[0].Events[0]; first.Name != "connect" || !first.At.Equal(t0) {
		t.Errorf("first step %s at %s, want connect at the flow's start %s", first.Name, first.At, t0)
	}
	// The tail of the rejected connection (its reset) is no new call.
	a.HandleTLS(handshake.Event{Kind: handshake.KindReset, Client: client, Server: server, Time: t0.Add(4 * time.Millisecond), FlowStart: t0})
	if len(r.calls) != 1 || r.events["reset"] != 1 {
		t.Errorf("calls %d after the reset, events %v", len(r.calls), r.events)
	}
	// A new connection from the same client port (the kernel sends no
	// event for its SYN) is a new call.
	t1 := t0.Add(time.Second)
	handshakeTo(a, client, t1, false, handshake.Event{Kind: handshake.KindHandshakeDone})
	if len(r.calls) != 2 || r.calls[1].Outcome != "done" || !r.calls[1].Start.Equal(t1) {
		t.Errorf("the next connection from %s: calls %+v, want a second call, done, from %s", client, r.calls, t1)
	}
}

// TestTLS13Rejection: in TLS 1.3 the alert is encrypted; the facts say so.
func TestTLS13Rejection(t *testing.T) {
	a, r := newAssembler(t)
	handshakeTo(a, client, time.Now(), true, handshake.Event{Kind: handshake.KindHandshakeRejected, Phase: handshake.PhaseServerFlight, TLS13: true, EncryptedAlert: true})
	if len(r.failed) != 1 || r.failed[0].Evidence.Wire.TLSVersion != "1.3" || !r.failed[0].Evidence.Wire.EncryptedAlert ||
		r.failed[0].Evidence.Detail != "TLS 1.3 handshake rejected by client 10.0.0.2:41000: encrypted alert right after the server's first flight" {
		t.Fatalf("failed %+v", r.failed)
	}
}

// TestOwnProbesLeftOut: the agent's own probe connections are neither
// calls nor failures nor counted events.
func TestOwnProbesLeftOut(t *testing.T) {
	a, r := newAssembler(t)
	a.HandleTLS(handshake.Event{Kind: handshake.KindRefused, Client: probe, Server: server, Time: time.Now()})
	a.HandleTLS(handshake.Event{Kind: handshake.KindRefused, Client: client, Server: server, Time: time.Now()})
	if len(r.failed) != 1 || r.failed[0].Evidence.Wire.Client != client || r.events["refused"] != 1 || len(r.calls) != 1 || r.calls[0].Outcome != "refused" {
		t.Fatalf("failed %+v, events %v, calls %+v: want only the API server's refused call", r.failed, r.events, r.calls)
	}
}

// TestOpenConnections counts the handshakes done and not closed.
func TestOpenConnections(t *testing.T) {
	a, r := newAssembler(t)
	other := netip.MustParseAddrPort("10.0.0.2:41001")
	handshakeTo(a, client, time.Now(), true, handshake.Event{Kind: handshake.KindHandshakeDone})
	handshakeTo(a, other, time.Now(), true, handshake.Event{Kind: handshake.KindHandshakeDone})
	if n := a.OpenConnections(server); n != 2 || r.done != 2 {
		t.Fatalf("open %d, done %d; want 2 and 2", n, r.done)
	}
	a.HandleTLS(handshake.Event{Kind: handshake.KindClose, Client: client, Server: server, Time: time.Now()})
	if n := a.OpenConnections(server); n != 1 {
		t.Errorf("open %d after a close, want 1", n)
	}
	// A close of a connection that was open before tracing started is no call.
	calls := len(r.calls)
	a.HandleTLS(handshake.Event{Kind: handshake.KindClose, Client: netip.MustParseAddrPort("10.0.0.2:40000"), Server: server, Time: time.Now()})
	if len(r.calls) != calls {
		t.Errorf("a kept-alive connection's close made a call: %+v", r.calls[len(r.calls)-1])
	}
}

// TestJudgeLatency: an answer slower than the threshold is SlowResponse;
// one at timeoutSeconds, or so close to it that it is what the backend sent
// as the API server gave up, is WebhookTimeout; a fast one is nothing,
// unless it follows a slow one (then the finding resolves).
func TestJudgeLatency(t *testing.T) {
	for _, tc := range []struct {
		latency time.Duration
		want    findings.Class
	}{
		{100 * time.Millisecond, ""},
		{1500 * time.Millisecond, findings.SlowResponse},
		{999 * time.Millisecond, ""},                          // just under the 1 s threshold (half of timeoutSeconds 2)
		{1999600 * time.Microsecond, findings.WebhookTimeout}, // seen in a game day: the close after the deadline
		{2 * time.Second, findings.WebhookTimeout},
		{2100 * time.Millisecond, findings.WebhookTimeout},
	} {
		a, r := newAssembler(t)
		a.HandleTLS(handshake.Event{Kind: handshake.KindResponse, Client: client, Server: server, Time: time.Now(), Latency: tc.latency})
		var got findings.Class
		if len(r.latency) > 0 {
			got = r.latency[0].Class
			if w := r.latency[0].Evidence.Wire; w == nil || w.Latency != tc.latency {
				t.Errorf("answer after %s: wire facts %+v", tc.latency, w)
			}
		}
		if got != tc.want || len(r.response) != 1 {
			t.Errorf("answer after %s of timeoutSeconds 2: %q (%d responses), want %q", tc.latency, got, len(r.response), tc.want)
		}
		if tc.want != "" {
			a.HandleTLS(handshake.Event{Kind: handshake.KindResponse, Client: client, Server: server, Time: time.Now(), Latency: time.Millisecond})
			if len(r.latency) != 2 || r.latency[1].Class != findings.Healthy || r.latency[1].Covers != findings.Latency {
				t.Errorf("a fast answer after a slow one: %+v, want Healthy for latency", r.latency)
			}
		}
	}
}

// TestTickSaysWhenNothingWaits: the Assembler needs its ticks only while
// something waits for its time (here a request, until its answer); an
// idle node's agent then sleeps.
func TestTickSaysWhenNothingWaits(t *testing.T) {
	a, _ := newAssembler(t)
	t0 := time.Now()
	if a.Tick(t0) {
		t.Fatal("more to do with nothing seen")
	}
	a.HandleTLS(handshake.Event{Kind: handshake.KindRequest, Client: client, Server: server, Time: t0})
	if !a.Tick(t0.Add(100 * time.Millisecond)) {
		t.Fatal("nothing to do while a request waits for its answer")
	}
	a.HandleTLS(handshake.Event{Kind: handshake.KindResponse, Client: client, Server: server, Time: t0.Add(200 * time.Millisecond), Latency: 200 * time.Millisecond})
	if a.Tick(t0.Add(300 * time.Millisecond)) {
		t.Fatal("more to do once the request is answered")
	}
}

// TestUnansweredRequest: a request with no answer for half its
// timeoutSeconds is named a stall, with when the API server will fail the
// write; past timeoutSeconds on a connection kept open (HTTP/2) it is
// WebhookTimeout, and the answer that comes later is not timed from it.
func TestUnansweredRequest(t *testing.T) {
	a, r := newAssembler(t)
	t0 := time.Now()
	a.HandleTLS(handshake.Event{Kind: handshake.KindRequest, Client: client, Server: server, Time: t0})
	a.Tick(t0.Add(900 * time.Millisecond))
	if len(r.latency) != 0 {
		t.Fatalf("judged early: %+v", r.latency)
	}
	a.Tick(t0.Add(time.Second))
	a.Tick(t0.Add(1250 * time.Millisecond)) // named once
	want := "the backend has not answered the request from " + client.String() + " for 1s: the API server fails the write at " + t0.Add(2*time.Second).Format("15:04:05.000")
	if len(r.latency) != 1 || r.latency[0].Class != findings.WebhookTimeout || r.latency[0].Evidence.Detail[:len(want)] != want {
		t.Fatalf("latency %+v, want one stall naming when the write fails: %q", r.latency, want)
	}
	a.Tick(t0.Add(2100 * time.Millisecond))
	if len(r.latency) != 2 || r.latency[1].Class != findings.WebhookTimeout || !r.latency[1].Started.Equal(t0) {
		t.Fatalf("latency %+v, want a WebhookTimeout started at the request", r.latency)
	}
	a.HandleTLS(handshake.Event{Kind: handshake.KindResponse, Client: client, Server: server, Time: t0.Add(3 * time.Second), Latency: 3 * time.Second})
	if len(r.latency) != 2 {
		t.Errorf("the abandoned request's late answer was judged: %+v", r.latency[2:])
	}
	// Quiet for a minute: the finding resolves.
	a.Tick(time.Now().Add(latencyQuiet + time.Second))
	if len(r.latency) != 3 || r.latency[2].Class != findings.Healthy {
		t.Errorf("latency %+v, want a Healthy observation once quiet", r.latency)
	}
}

// TestStalledClientHello: a ClientHello the backend does not answer for
// half the webhook's timeoutSeconds is HandshakeTimeout from the wire,
// before the API server gives up; one answered in time is nothing.
func TestStalledClientHello(t *testing.T) {
	a, r := newAssembler(t)
	t0 := time.Now()
	a.HandleTLS(handshake.Event{Kind: handshake.KindClientHello, Client: client, Server: server, Time: t0})
	a.Tick(t0.Add(1100 * time.Millisecond))
	if len(r.latency) != 1 || r.latency[0].Class != findings.HandshakeTimeout || r.latency[0].Evidence.Wire.Phase != findings.PhaseClientHello {
		t.Fatalf("a stalled ClientHello: %+v, want HandshakeTimeout at the ClientHello", r.latency)
	}
	answered := netip.MustParseAddrPort("10.0.0.2:41001")
	a.HandleTLS(handshake.Event{Kind: handshake.KindClientHello, Client: answered, Server: server, Time: t0})
	a.HandleTLS(handshake.Event{Kind: handshake.KindServerHello, Client: answered, Server: server, Time: t0.Add(5 * time.Millisecond), FromServer: true})
	a.Tick(t0.Add(1500 * time.Millisecond))
	if len(r.latency) != 1 {
		t.Errorf("an answered ClientHello was named a stall: %+v", r.latency[1:])
	}
}

// TestServerClosesAfterClientHello: the backend closes the connection
// after the client's ClientHello with no TLS answer (a sidecar in front
// of the webhook): a failed call, at once, saying so; the stalled
// ClientHello is forgotten.
func TestServerClosesAfterClientHello(t *testing.T) {
	a, r := newAssembler(t)
	t0 := time.Now()
	a.HandleTLS(handshake.Event{Kind: handshake.KindClientHello, Client: client, Server: server, Time: t0.Add(time.Millisecond), FlowStart: t0})
	a.HandleTLS(handshake.Event{Kind: handshake.KindClose, Client: client, Server: server, Time: t0.Add(2 * time.Millisecond), FlowStart: t0,
		FromServer: true, Phase: handshake.PhaseClientHello})
	if len(r.failed) != 1 || !strings.Contains(r.failed[0].Evidence.Detail, "closed the connection from "+client.String()+" after its ClientHello without a TLS answer") {
		t.Fatalf("failed calls %+v, want one naming the close", r.failed)
	}
	a.Tick(t0.Add(5 * time.Second))
	if len(r.latency) != 0 {
		t.Errorf("a closed connection's ClientHello was named a stall: %+v", r.latency)
	}
}

// TestFinishedCallsKeepNothing: a call whose handshake succeeded leaves no
// state behind (at 1,000 new connections a second, a minute of them was
// 60,000 entries walked at every Tick), while a client that gave up after
// its ClientHello is remembered, so that the server's late hello on that
// connection is no new call.
func TestFinishedCallsKeepNothing(t *testing.T) {
	a, r := newAssembler(t)
	t0 := time.Now()
	for i := range 100 {
		c := netip.AddrPortFrom(client.Addr(), uint16(20000+i))
		handshakeTo(a, c, t0.Add(time.Duration(i)*time.Millisecond), true, handshake.Event{Kind: handshake.KindHandshakeDone})
	}
	if len(r.calls) != 100 || len(a.done) != 0 {
		t.Fatalf("%d calls, %d remembered after they succeeded; want 100 and none", len(r.calls), len(a.done))
	}
	t1 := t0.Add(time.Second)
	a.HandleTLS(handshake.Event{Kind: handshake.KindClientHello, Client: client, Server: server, Time: t1.Add(time.Millisecond), FlowStart: t1})
	a.HandleTLS(handshake.Event{Kind: handshake.KindClose, Client: client, Server: server, Time: t1.Add(2 * time.Second), FlowStart: t1,
		Phase: handshake.PhaseClientHello})
	a.HandleTLS(handshake.Event{Kind: handshake.KindServerHello, Client: client, Server: server, Time: t1.Add(3 * time.Second), FlowStart: t1,
		FromServer: true, Phase: handshake.PhaseClientHello})
	if len(r.calls) != 101 || r.calls[100].Outcome != "closed" || len(a.calls) != 0 {
		t.Errorf("calls %d (last %q), %d open after the late ServerHello; want 101, closed, none open", len(r.calls), r.calls[len(r.calls)-1].Outcome, len(a.calls))
	}
}

// TestAddressReusedForgetsTheOldPod: a pod is deleted with a request and
// a ClientHello unanswered (its network went with it, so the kernel saw no
// close), and later a new pod takes its address. What the Assembler held
// of the old pod's connections must not read as the new pod's stalls.
func TestAddressReusedForgetsTheOldPod(t *testing.T) {
	for _, tc := range []struct {
		name string
		gap  bool // the address is not traced for a while in between
	}{{"untraced in between", true}, {"taken over at once", false}} {
		t.Run(tc.name, func(t *testing.T) {
			a, r := newAssembler(t)
			t0 := time.Now()
			a.HandleTLS(handshake.Event{Kind: handshake.KindRequest, Client: client, Server: server, Time: t0})
			a.HandleTLS(handshake.Event{Kind: handshake.KindClientHello, Client: netip.MustParseAddrPort("10.0.0.2:41001"), Server: server, Time: t0})
			if tc.gap {
				a.SetBackends(nil)
			}
			a.SetBackends([]Backend{{Addr: server, Webhooks: []callout.Webhook{hook}, Pod: &callout.PodRef{Namespace: "ns", Name: "hook-1", Node: "node-1"}}})
			a.Tick(t0.Add(time.Minute))
			if len(r.latency) != 0 {
				t.Errorf("the old pod's unanswered request and ClientHello were named the new pod's: %+v", r.latency)
			}
		})
	}
	// The same pod again (a resolution that did not change it) keeps them.
	a, r := newAssembler(t)
	t0 := time.Now()
	a.HandleTLS(handshake.Event{Kind: handshake.KindRequest, Client: client, Server: server, Time: t0})
	a.SetBackends([]Backend{{Addr: server, Webhooks: []callout.Webhook{hook}, Pod: &callout.PodRef{Namespace: "ns", Name: "hook-0", Node: "node-1"}}})
	a.Tick(t0.Add(1100 * time.Millisecond))
	if len(r.latency) != 1 || r.latency[0].Class != findings.WebhookTimeout {
		t.Errorf("a request unanswered across a resolution that kept its pod: %+v, want a stall", r.latency)
	}
}
