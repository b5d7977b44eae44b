package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/hookscope/hookscope/apisignals"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
)

// TestJudgePathWindow: the Lease holder reads the ledger of a backend on
// another node for a call the API server reports failing. A connection
// that closed after the call may have failed may be the call's own (a
// refused handshake closes it at once, a timed-out call at its end), so
// its answered SYN says the packets reach the pod; a connection that
// closed before the call failed was not its own, and no SYN since then
// says the packets stop before the node.
func TestJudgePathWindow(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	apiServer := netip.MustParseAddr("172.18.0.2")
	probed := dataplane.SYNs{SYNs: 3, Answered: 3, LastSYN: now.Add(-2 * time.Second), LastAnswer: now.Add(-2 * time.Second)}
	// ledger: one API server connection, SYN answered at syn, closed at closed.
	ledger := func(syn, closed time.Time) dataplane.Ledger {
		arr := dataplane.Arrivals{Probes: probed}
		arr.AddClient(apiServer, dataplane.SYNs{SYNs: 1, Answered: 1, LastSYN: syn, LastAnswer: syn})
		return dataplane.Ledger{Node: "node-b", Traced: true, Arrivals: arr, LastClosed: closed}
	}
	for _, tc := range []struct {
		name    string
		failure apisignals.Failure
		ledger  dataplane.Ledger
		want    findings.Class // "": no verdict
	}{{
		// A conversion webhook's certificate expired: the API server
		// connects, refuses the handshake and closes, and /metrics counts
		// the conversion as failed at the next scrape.
		name: "handshake refused, read from metrics",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com"},
			Source: apisignals.FromMetrics, At: now, Since: now.Add(-time.Second)},
		ledger: ledger(now.Add(-800*time.Millisecond), now.Add(-790*time.Millisecond)),
	}, {
		name: "timed out, the last connection closed before the call",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com", Class: findings.WebhookTimeout},
			Source: apisignals.FromEvent, At: now},
		ledger: ledger(now.Add(-11*time.Second), now.Add(-10500*time.Millisecond)),
		want:   findings.BlockedBeforeNode,
	}, {
		// /metrics says only that calls failed: the connections were
		// closed (a restart), then the API server's new one never arrived.
		name: "failed, read from metrics, the last connection closed before the call",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com"},
			Source: apisignals.FromMetrics, At: now, Since: now.Add(-time.Second)},
		ledger: ledger(now.Add(-3*time.Second), now.Add(-2700*time.Millisecond)),
		want:   findings.BlockedBeforeNode,
	}, {
		// A slow webhook on HTTP/1: the API server gives up and closes
		// the connection its call opened.
		name: "timed out on a connection the call opened and closed",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com", Class: findings.WebhookTimeout},
			Source: apisignals.FromEvent, At: now},
		ledger: ledger(now.Add(-9700*time.Millisecond), now.Add(300*time.Millisecond)),
	}, {
		// A new pod took over an address another pod had, and the
		// agent attached to its interface after the API server's call
		// was refused: no SYN in the ledger says nothing of that call.
		name: "handshake refused before tracing began",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com"},
			Source: apisignals.FromMetrics, At: now, Since: now.Add(-time.Second)},
		ledger: dataplane.Ledger{Node: "node-b", Traced: true, TracedSince: now.Add(-500 * time.Millisecond), Arrivals: dataplane.Arrivals{Probes: probed}},
	}, {
		name: "no SYN since long before the call",
		failure: apisignals.Failure{WebhookFailure: apisignals.WebhookFailure{Webhook: "hook.example.com"},
			Source: apisignals.FromMetrics, At: now, Since: now.Add(-time.Second)},
		ledger: dataplane.Ledger{Node: "node-b", Traced: true, TracedSince: now.Add(-time.Minute), Arrivals: dataplane.Arrivals{Probes: probed}},
		want:   findings.BlockedBeforeNode,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			store := findings.NewStore(findings.Config{})
			peer := func(context.Context, string, netip.AddrPort) (dataplane.Ledger, error) { return tc.ledger, nil }
			a := New(Config{NodeName: "node-a", PeerLedger: peer, APIServer: func(addr netip.Addr) bool { return addr == apiServer }},
				Parts{Store: store})
			w := servedBy("hook.example.com", "hook-0")
			w.TimeoutSeconds = 10
			w.Backends[0].Pod.Node, w.Backends[0].Ready = "node-b", true
			a.setWebhooks([]callout.Webhook{w})

			a.judgePath(tc.failure)
			open, _ := store.Findings()
			var got findings.Class
			if len(open) > 0 {
				got = open[0].Class
			}
			if len(open) > 1 || got != tc.want {
				t.Fatalf("open findings %+v; want %q", open, tc.want)
			}
		})
	}
}
