package agent

import (
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// TestPathVerdictOnAnotherNodeSurvivesResolution: the Lease holder's
// verdict that the packets stop before a backend's node is about a backend
// on another node. A new resolution (an APIService's status written, a
// Service changed) keeps it while the backend is there; its own probe
// findings on backends not on its node are not kept, and the verdict goes
// with the backend.
func TestPathVerdictOnAnotherNodeSurvivesResolution(t *testing.T) {
	store := findings.NewStore(findings.Config{})
	a := New(Config{NodeName: "node-a", ObjectChecks: true}, Parts{Store: store})
	w := servedBy("v.path.example.com", "hook-0", "hook-1")
	w.Backends[0].Pod.Node, w.Backends[1].Pod.Node = "node-b", "node-b"
	a.setWebhooks([]callout.Webhook{w})
	now := time.Now()
	store.Observe(findings.Observation{Webhook: w, Backend: w.Backends[0].Addr, Class: findings.BlockedBeforeNode, Started: now,
		Evidence: findings.Evidence{Source: findings.Kernel, At: now, Detail: "no SYN from the API server reached pod"}})
	store.Observe(findings.Observation{Webhook: w, Backend: w.Backends[1].Addr, Class: findings.ConnectionRefused, Started: now,
		Evidence: findings.Evidence{Source: findings.Probe, At: now, Detail: "connection refused"}})

	a.setWebhooks([]callout.Webhook{w})
	open, _ := store.Findings()
	if len(open) != 1 || open[0].Class != findings.BlockedBeforeNode {
		t.Fatalf("after a new resolution, open findings %+v; want the BlockedBeforeNode verdict only", open)
	}

	gone := w
	gone.Backends = gone.Backends[1:]
	a.setWebhooks([]callout.Webhook{gone})
	if open, _ := store.Findings(); len(open) != 0 {
		t.Fatalf("the backend is gone, yet findings stay open: %+v", open)
	}
}
