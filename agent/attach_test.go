package agent

import (
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
)

// recordingDataPlane traces whatever it is given.
type recordingDataPlane struct {
	mu       sync.Mutex
	backends []dataplane.Backend
}

func (r *recordingDataPlane) SetBackends(bs []dataplane.Backend) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends = bs
	return nil
}

func (r *recordingDataPlane) Tracing(addr netip.AddrPort) (dataplane.Tracing, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.backends, func(b dataplane.Backend) bool { return b.Addr == addr })
	if i < 0 {
		return dataplane.Tracing{}, false
	}
	return dataplane.Tracing{Pod: r.backends[i].Pod}, true
}

func (r *recordingDataPlane) Arrivals(netip.AddrPort) (dataplane.Arrivals, error) {
	return dataplane.Arrivals{}, nil
}

func (r *recordingDataPlane) OnNode(netip.Addr) bool { return false }

// TestDataPlaneAttachedAfterTheInventory: the programs load while the
// inventory lists. The agent is not ready until they are attached (or
// refused), and once attached they trace the local backends the inventory
// already resolved.
func TestDataPlaneAttachedAfterTheInventory(t *testing.T) {
	for _, loads := range []bool{true, false} {
		a := New(Config{NodeName: "node-a"}, Parts{Store: findings.NewStore(findings.Config{}), DataPlaneLater: true})
		w := servedBy("hook.example.com", "hook-0")
		w.Backends[0].Pod.Node, w.Backends[0].Ready = "node-a", true
		a.setWebhooks([]callout.Webhook{w})
		if a.Synced() {
			t.Fatal("ready while the programs are still loading")
		}
		select {
		case <-a.WhenSynced():
			t.Fatal("WhenSynced closed while the programs are still loading")
		default:
		}
		var dp *recordingDataPlane
		if loads {
			dp = &recordingDataPlane{}
			a.AttachDataPlane(dp)
		} else {
			a.AttachDataPlane(nil) // the kernel refused them
		}
		if !a.Synced() {
			t.Fatalf("loaded %v: not ready once the data plane is decided", loads)
		}
		select {
		case <-a.WhenSynced():
		default:
			t.Fatalf("loaded %v: WhenSynced not closed once ready", loads)
		}
		for a.queue.Len() > 0 {
			task, _ := a.queue.Get()
			if task.sync {
				a.syncBackends(task)
			}
			a.queue.Done(task)
		}
		if !loads {
			if a.dataPlane() != nil {
				t.Fatal("a data plane after the kernel refused it")
			}
			continue
		}
		if _, ok := dp.Tracing(w.Backends[0].Addr); !ok {
			t.Fatalf("the local backend %s is not traced once the programs loaded; traced %v", w.Backends[0].Addr, dp.backends)
		}
	}
}
