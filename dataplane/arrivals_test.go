package dataplane

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
)

func TestArrivalsJudge(t *testing.T) {
	call := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC) // the failed call began
	before, after := call.Add(-time.Minute), call.Add(time.Second)
	cases := []struct {
		name   string
		a      Arrivals
		want   findings.Class
		detail string
	}{
		{"no SYN from the API server, the probe connects",
			Arrivals{Clients: SYNs{SYNs: 4, Answered: 4, LastSYN: before, LastAnswer: before}, Probes: SYNs{SYNs: 9, Answered: 9, LastSYN: after, LastAnswer: after}},
			findings.BlockedBeforeNode, "no SYN from the API server reached pod hooks/hook-1's interface on node n1 since 03:00:00.000 (last one: 02:59:00.000), while this node's probes connect (9 of 9 SYNs answered)"},
		{"never any SYN from the API server",
			Arrivals{Probes: SYNs{SYNs: 1, Answered: 1, LastSYN: call.Add(-5 * time.Second), LastAnswer: call.Add(-5 * time.Second)}},
			findings.BlockedBeforeNode, "(last one: none since tracing began)"},
		{"SYNs arrive, none answered",
			Arrivals{Clients: SYNs{SYNs: 6, Answered: 2, LastSYN: after, LastAnswer: before}},
			findings.DroppedAtPod, "SYNs reached pod hooks/hook-1's interface on node n1 since 03:00:00.000 (last at 03:00:01.000) and the pod answered none of them"},
		{"no SYN, but the API server sends on a connection from before tracing: no verdict",
			Arrivals{Clients: SYNs{Untracked: 3, LastUntracked: after}, Probes: SYNs{SYNs: 9, Answered: 9, LastSYN: after, LastAnswer: after}}, "", ""},
		{"SYNs arrive and are answered: the path is not it", Arrivals{Clients: SYNs{SYNs: 2, Answered: 2, LastSYN: after, LastAnswer: after}}, "", ""},
		{"no SYN, and this node's probe does not connect either: no verdict", Arrivals{Probes: SYNs{SYNs: 3, LastSYN: after}}, "", ""},
		{"no SYN, the probe connected long ago: no verdict", Arrivals{Probes: SYNs{SYNs: 3, Answered: 3, LastSYN: call.Add(-time.Hour), LastAnswer: call.Add(-time.Hour)}}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := tc.a.Judge(call, "hooks/hook-1", "n1")
			if ok != (tc.want != "") || v.Class != tc.want || !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("Judge = %+v, %v; want %q with %q", v, ok, tc.want, tc.detail)
			}
		})
	}
}

func TestArrivalsJudgeProbe(t *testing.T) {
	start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	dropped := Arrivals{Probes: SYNs{SYNs: 3, Answered: 5, LastSYN: start.Add(time.Second), LastAnswer: start.Add(-time.Minute)}}
	if v, ok := dropped.JudgeProbe(start, "hooks/hook-1", "n1"); !ok || v.Class != findings.DroppedAtPod || !strings.Contains(v.Detail, "pod hooks/hook-1's interface on node n1 (last at 03:00:01.000)") {
		t.Errorf("the probe's SYNs reached the pod, unanswered: %+v, %v", v, ok)
	}
	// The probe's SYN never reached the pod's interface: the node drops it.
	if v, ok := (Arrivals{Probes: SYNs{SYNs: 3, LastSYN: start.Add(-time.Minute)}}).JudgeProbe(start, "p", "n"); ok {
		t.Errorf("no SYN at the pod: %+v, want no verdict", v)
	}
	if v, ok := (Arrivals{Probes: SYNs{SYNs: 1, Answered: 1, LastSYN: start.Add(time.Second), LastAnswer: start.Add(time.Second)}}).JudgeProbe(start, "p", "n"); ok {
		t.Errorf("answered: %+v, want no verdict", v)
	}
}

// TestArrivalsFromAPIServer: the ledger speaks of the API server's SYNs
// alone when it holds some from the API server's addresses: a kubelet's
// probe answered while the API server's SYNs are dropped is no recovery.
func TestArrivalsFromAPIServer(t *testing.T) {
	call := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	apiserver, kubelet := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.4")
	var a Arrivals
	a.AddClient(apiserver, SYNs{SYNs: 5, Answered: 2, LastSYN: call.Add(time.Second), LastAnswer: call.Add(-time.Minute)})
	a.AddClient(kubelet, SYNs{SYNs: 9, Answered: 9, LastSYN: call.Add(2 * time.Second), LastAnswer: call.Add(2 * time.Second)})
	if v, ok := a.Judge(call, "p", "n"); ok {
		t.Errorf("every client's SYNs: %+v, want no verdict (the kubelet's are answered)", v)
	}
	only, ok := a.FromAPIServer(func(addr netip.Addr) bool { return addr == apiserver })
	if !ok || only.Clients.SYNs != 5 || only.Clients.LastAnswerTo != apiserver {
		t.Fatalf("FromAPIServer = %+v, %v; want the API server's 5 SYNs", only.Clients, ok)
	}
	if v, ok := only.Judge(call, "p", "n"); !ok || v.Class != findings.DroppedAtPod {
		t.Errorf("the API server's SYNs: %+v, %v; want DroppedAtPod", v, ok)
	}
	// The API server connects from addresses that are not its endpoints:
	// the ledger is all there is.
	if all, ok := a.FromAPIServer(func(netip.Addr) bool { return false }); ok || all.Clients.SYNs != 14 {
		t.Errorf("no SYN from the API server's addresses: %+v, %v; want every client's, not identified", all.Clients, ok)
	}
	if a.Clients.LastAnswerTo != kubelet {
		t.Errorf("last answer to %s; want the kubelet's", a.Clients.LastAnswerTo)
	}
	// Bounded: the least recent clients go.
	for i := range 2 * maxClients {
		a.AddClient(netip.AddrFrom4([4]byte{10, 0, 9, byte(i)}), SYNs{SYNs: 1, LastSYN: call.Add(time.Hour + time.Duration(i)*time.Second)})
	}
	if len(a.ByClient) != maxClients || a.ByClient[apiserver] != (SYNs{}) {
		t.Errorf("%d clients kept (the API server's kept: %v), want %d, the latest", len(a.ByClient), a.ByClient[apiserver] != (SYNs{}), maxClients)
	}
}
