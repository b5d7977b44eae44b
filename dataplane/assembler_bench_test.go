package dataplane

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// BenchmarkAssemblerCall is the agent's own work for one call after the
// kernel: the records of a webhook call folded into a Call, its latency and
// its outputs (which do nothing here, so that only the assembler is timed).
// new_connection: a TLS 1.3 connection per call, as the kernel sends it
// (hellos, handshake done, request, response, close, and the TCP close of
// both sockets); kept_alive: a request and its response on an open
// connection.
func BenchmarkAssemblerCall(b *testing.B) {
	newBench := func() *Assembler {
		a := NewAssembler(Config{IsOwn: func(c, s netip.AddrPort) bool { return false }, SlowThreshold: time.Second,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		a.SetOutput(Output{
			FailedCall: func(Backend, findings.FailedCall) {}, HandshakeDone: func(Backend) {},
			Latency: func(findings.Observation) {}, Call: func(callout.Call) {}, Event: func(string) {},
			Response: func(callout.Ref, time.Duration) {},
		})
		a.SetBackends([]Backend{{Addr: server, Webhooks: []callout.Webhook{hook}, Pod: &callout.PodRef{Namespace: "ns", Name: "hook-0", Node: "node-1"}}})
		return a
	}
	t0 := time.Now()
	b.Run("new_connection", func(b *testing.B) {
		a := newBench()
		b.ReportAllocs()
		for i := range b.N {
			c := netip.AddrPortFrom(client.Addr(), uint16(1024+i%60000))
			at := t0.Add(time.Duration(i) * time.Millisecond)
			ev := func(k handshake.EventKind, dt time.Duration, fromServer bool) handshake.Event {
				return handshake.Event{Kind: k, Client: c, Server: server, Time: at.Add(dt), FlowStart: at, FromServer: fromServer,
					TLS13: k != handshake.KindClientHello, Cipher: 0x1301, Phase: handshake.PhaseDone}
			}
			a.HandleTLS(ev(handshake.KindClientHello, 100*time.Microsecond, false))
			a.HandleTLS(ev(handshake.KindServerHello, 200*time.Microsecond, true))
			a.HandleTLS(ev(handshake.KindHandshakeDone, 300*time.Microsecond, false))
			a.HandleTLS(ev(handshake.KindRequest, 400*time.Microsecond, false))
			a.HandleTLS(ev(handshake.KindResponse, 600*time.Microsecond, true))
			a.HandleTLS(ev(handshake.KindClose, 700*time.Microsecond, false))
			for _, side := range []tcpstate.Side{tcpstate.SideClient, tcpstate.SideServer} {
				a.HandleTCP(tcpstate.Event{Kind: tcpstate.KindClose, Side: side, Client: c, Server: server, Time: at.Add(800 * time.Microsecond),
					Start: at, Duration: 800 * time.Microsecond, Established: true, ClosedBy: tcpstate.SideClient})
			}
			if i%1000 == 999 {
				a.Tick(at)
			}
		}
	})
	b.Run("kept_alive", func(b *testing.B) {
		a := newBench()
		b.ReportAllocs()
		ev := func(k handshake.EventKind, at time.Time, fromServer bool) handshake.Event {
			return handshake.Event{Kind: k, Client: client, Server: server, Time: at, FlowStart: t0, FromServer: fromServer,
				TLS13: true, Cipher: 0x1301, Phase: handshake.PhaseDone}
		}
		for i := range b.N {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			a.HandleTLS(ev(handshake.KindRequest, at, false))
			a.HandleTLS(ev(handshake.KindResponse, at.Add(200*time.Microsecond), true))
			if i%1000 == 999 {
				a.Tick(at)
			}
		}
	})
}
