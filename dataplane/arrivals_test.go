package dataplane

import (
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
