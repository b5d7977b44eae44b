package findings

import (
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/hookscope/hookscope/callout"
)

// sink records what the store reports.
type sink struct {
	mu  sync.Mutex
	got []Finding
}

func (s *sink) Report(f Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, f)
}

func (s *sink) all() []Finding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Finding(nil), s.got...)
}

var (
	hook = callout.Webhook{
		Ref:           callout.Ref{Kind: "Validating", Configuration: "cfg", Name: "v.example.com"},
		FailurePolicy: "Fail", TimeoutSeconds: 10,
		Service:  &callout.ServiceRef{Namespace: "ns", Name: "svc", Port: 443},
		Backends: []callout.Backend{{Addr: backend, Pod: &callout.PodRef{Namespace: "ns", Name: "svc-0", Node: "node-1"}, Ready: true}},
	}
	backend = netip.MustParseAddrPort("10.0.1.5:8443")
	client  = netip.MustParseAddrPort("10.0.0.2:41000")
)

func newTestStore(t *testing.T, statePath string) (*Store, *sink, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	sk := &sink{}
	s := NewStore(Config{Sinks: []Sink{sk}, Clock: clk, StatePath: statePath, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RestoreGrace: 30 * time.Second, HandOver: time.Minute})
	return s, sk, clk
}

func probeSaw(class Class, at time.Time, detail string) Observation {
	return Observation{Webhook: hook, Backend: backend, Class: class, Started: at,
		Evidence: Evidence{Source: Probe, At: at, Detail: detail}}
}

// TestLifecycle: a finding opens once with the kernel's evidence of the
// failed call before it, keeps its ID while the failure goes on, changes
// class by resolving and opening anew, resolves, and reopens under a new ID.
func TestLifecycle(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	t0 := clk.Now()
	s.NoteFailedCall(FailedCall{Backend: backend, Started: t0.Add(-5 * time.Millisecond), Evidence: Evidence{Source: Kernel, At: t0,
		Detail: "TLS handshake rejected by client 10.0.0.2:41000: fatal alert bad_certificate (42)",
		Wire:   &WireFacts{Client: client, Phase: PhaseServerHello, TLSVersion: "1.2", Alert: &TLSAlert{Level: 2, Description: 42}}}})
	clk.Step(3 * time.Millisecond)
	s.Observe(probeSaw(CertExpired, clk.Now(), "x509: certificate has expired or is not yet valid"))
	got := sk.all()
	if len(got) != 1 {
		t.Fatalf("reports %+v, want one open finding", got)
	}
	f := got[0]
	if f.Class != CertExpired || f.Effect != WritesRejected || f.Pod == nil || f.Pod.Name != "svc-0" || !f.FirstFailure.Equal(t0.Add(-5*time.Millisecond)) {
		t.Errorf("finding %+v: want CertExpired, writes rejected, pod svc-0, first failure at the failed call", f)
	}
	if len(f.Evidence) != 2 || f.Evidence[0].Source != Kernel || f.Evidence[1].Source != Probe {
		t.Fatalf("evidence %+v, want the kernel's then the probe's", f.Evidence)
	}
	if w := f.Wire(); w == nil || w.TLSVersion != "1.2" || w.Alert.String() != "fatal alert bad_certificate (42)" {
		t.Errorf("wire facts %+v", w)
	}
	if !strings.Contains(f.Remediation, "renew the serving certificate behind Service ns/svc") || !strings.Contains(f.Remediation, "hookscope remediate ignore v.example.com") {
		t.Errorf("remediation %q", f.Remediation)
	}

	// The same failure again: no new report, the same ID, no duplicate evidence.
	s.Observe(probeSaw(CertExpired, clk.Now(), "x509: certificate has expired or is not yet valid"))
	if n := len(sk.all()); n != 1 {
		t.Fatalf("an unchanged failure was reported again: %d reports", n)
	}
	open, _ := s.Findings()
	if len(open) != 1 || open[0].ID != f.ID || len(open[0].Evidence) != 2 {
		t.Fatalf("open %+v", open)
	}

	// Another reason: the old finding resolves, a new one opens.
	clk.Step(time.Second)
	s.Observe(probeSaw(UnknownAuthority, clk.Now(), "x509: certificate signed by unknown authority"))
	got = sk.all()
	if len(got) != 3 || got[1].ID != f.ID || got[1].Resolved == nil || got[2].Class != UnknownAuthority || got[2].ID == f.ID {
		t.Fatalf("reports %+v, want CertExpired resolved then UnknownAuthority opened", got)
	}

	// Healthy resolves; a failure later is a new episode with a new ID.
	clk.Step(time.Second)
	s.Observe(probeSaw(Healthy, clk.Now(), "handshake verifies"))
	clk.Step(time.Minute)
	s.Observe(probeSaw(UnknownAuthority, clk.Now(), "x509: certificate signed by unknown authority"))
	got = sk.all()
	if len(got) != 5 || got[3].Resolved == nil || got[4].Resolved != nil || got[4].ID == got[2].ID {
		t.Fatalf("reports %+v, want a resolution and a reopening under a new ID", got)
	}
	if _, resolved := s.Findings(); len(resolved) != 2 {
		t.Errorf("resolved %d, want 2", len(resolved))
	}
}

// TestHandshakeSaysNothingOfLatency: a probe that only shakes hands does
// not resolve a slow-webhook finding; a fast answer does.
func TestHandshakeSaysNothingOfLatency(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	slow := Observation{Webhook: hook, Backend: backend, Class: SlowResponse, Started: clk.Now(),
		Evidence: Evidence{Source: Kernel, At: clk.Now(), Detail: "answered after 1.5s", Wire: &WireFacts{Client: client, Latency: 1500 * time.Millisecond}}}
	s.Observe(slow)
	s.Observe(probeSaw(Healthy, clk.Now(), "handshake verifies"))
	if open, _ := s.Findings(); len(open) != 1 || open[0].Effect != WritesSlowed {
		t.Fatalf("open %+v, want SlowResponse still open with effect writes slowed", open)
	}
	s.Observe(Observation{Webhook: hook, Backend: backend, Class: Healthy, Covers: Latency, Evidence: Evidence{Source: Kernel, Detail: "answered in 2ms"}})
	if got := sk.all(); len(got) != 2 || got[1].Resolved == nil {
		t.Fatalf("reports %+v, want the slow finding resolved by a fast answer", got)
	}
}

// TestOpenConnections: a certificate that fails new handshakes while the
// API server writes over a connection it already has reads "the next new
// connection will fail" until a call is seen failing.
func TestOpenConnections(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	o := probeSaw(CertExpired, clk.Now(), "x509: certificate has expired")
	o.OpenConnections = 1
	s.Observe(o)
	if got := sk.all(); len(got) != 1 || got[0].Effect != NextConnectionFails {
		t.Fatalf("reports %+v, want the next-connection effect", got)
	}
	s.NoteFailedCall(FailedCall{Backend: backend, Evidence: Evidence{Source: Kernel, At: clk.Now(), Detail: "TLS handshake rejected by client", Wire: &WireFacts{Client: client}}})
	got := sk.all()
	if len(got) != 2 || got[1].Effect != WritesRejected || got[1].ID != got[0].ID || got[1].Wire() == nil {
		t.Fatalf("reports %+v, want the same finding now rejecting writes, with the kernel's evidence", got)
	}

	// The open connections close: the next write needs a new one.
	s2, sk2, clk2 := newTestStore(t, "")
	o.OpenConnections = 2
	s2.Observe(o)
	o.OpenConnections, o.Started = 0, clk2.Now()
	s2.Observe(o)
	if got := sk2.all(); len(got) != 2 || got[1].Effect != WritesRejected {
		t.Fatalf("reports %+v, want writes rejected once no connection is left", got)
	}

	// An API server signal of a rejected write says the same.
	s3, sk3, clk3 := newTestStore(t, "")
	o.OpenConnections = 1
	s3.Observe(o)
	s3.Signal(hook, true, Signal{Class: CertExpired, Started: clk3.Now(), Evidence: Evidence{Source: Event, At: clk3.Now(), Detail: "Event FailedCreate", Calls: 3}})
	if got := sk3.all(); len(got) != 2 || got[1].Effect != WritesRejected {
		t.Fatalf("reports %+v, want writes rejected after the API server's Event", got)
	}
}

// TestSignalReclass: a finding opened from the API server's counters
// alone says only that calls fail; the Event that names the cause
// re-classes it under the same ID, and its evidence is kept once however
// often the Event is updated.
func TestSignalReclass(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	s.Signal(hook, true, Signal{Class: CallsFailing, Started: clk.Now(), Evidence: Evidence{Source: Metrics, At: clk.Now(), Detail: "API server metrics: 3 more calls to v.example.com failed", Calls: 3}})
	ev := Evidence{Source: Event, At: clk.Now(), Detail: `Event FailedCreate on ReplicaSet ns/web: the serving certificate has expired: x509: certificate has expired or is not yet valid`, Calls: 1}
	for i := range 3 {
		clk.Step(time.Second)
		ev.At, ev.Calls = clk.Now(), i+1
		s.Signal(hook, true, Signal{Class: CertExpired, Started: clk.Now(), Evidence: ev})
	}
	got := sk.all()
	if len(got) != 2 || got[0].Class != CallsFailing || got[1].Class != CertExpired || got[1].ID != got[0].ID {
		t.Fatalf("reports %+v, want CallsFailing re-classed to CertExpired under the same ID", got)
	}
	open, _ := s.Findings()
	if len(open) != 1 || len(open[0].Evidence) != 2 || open[0].Evidence[1].Calls != 3 || !open[0].Evidence[1].At.Equal(clk.Now()) {
		t.Fatalf("open %+v, want the metrics and the Event once (the Event's latest count and time)", open)
	}

	// A signal for a webhook with a backend finding adds to it, opens nothing.
	s2, sk2, clk2 := newTestStore(t, "")
	s2.Observe(probeSaw(CertExpired, clk2.Now(), "x509: certificate has expired"))
	s2.Signal(hook, true, Signal{Class: CertExpired, Started: clk2.Now(), Evidence: ev})
	if open, _ := s2.Findings(); len(open) != 1 || len(open[0].Evidence) != 2 || len(sk2.all()) != 1 {
		t.Fatalf("open %+v, want one finding with the Event as evidence", open)
	}
	// Counters of a webhook the inventory does not know open nothing.
	s2.Signal(callout.Webhook{Ref: callout.Ref{Name: "gone.example.com"}}, false, Signal{Started: clk2.Now(), Evidence: Evidence{Source: Metrics, Detail: "3 more calls failed"}})
	if open, _ := s2.Findings(); len(open) != 1 {
		t.Errorf("a deleted webhook's counters opened a finding: %+v", open)
	}
}

// TestScrapeAfterAFailureEnded: a scrape of the API server's counters
// reports the calls that failed since the previous one. When the failure
// that made them fail was found and ended in between, they were its calls:
// the scrape opens nothing. A failure that goes on rises again at the
// next scrape, which opens the counters' finding.
func TestScrapeAfterAFailureEnded(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	prevScrape := clk.Now()
	clk.Step(time.Second)
	s.Observe(probeSaw(CertExpired, clk.Now(), "x509: certificate has expired"))
	clk.Step(8 * time.Second)
	s.Observe(Observation{Webhook: hook, Backend: backend, Class: Healthy, Covers: CertExpired.Aspect(),
		Evidence: Evidence{Source: Probe, At: clk.Now(), Detail: "the probe's handshake succeeds"}})
	clk.Step(6 * time.Second)
	scrape := func(since time.Time) {
		s.Signal(hook, true, Signal{Started: clk.Now(), Since: since,
			Evidence: Evidence{Source: Metrics, At: clk.Now(), Detail: "1 calls failed closed since the previous scrape", Calls: 1}})
	}
	scrape(prevScrape)
	if open, _ := s.Findings(); len(open) != 0 || len(sk.all()) != 2 {
		t.Fatalf("open %+v after a scrape that counted the ended failure's calls; want none", open)
	}
	prevScrape = clk.Now()
	clk.Step(15 * time.Second)
	scrape(prevScrape)
	if open, _ := s.Findings(); len(open) != 1 || open[0].Class != CallsFailing {
		t.Fatalf("open %+v after calls failed again; want the counters' finding", open)
	}
}

// TestSignalTakesTheBackendsCause: a finding opened from the API server's
// counters takes the cause a backend finding opened later names, with
// that finding's evidence (where the packets stop), under its own ID; a
// certificate that only expires soon names no cause of failed calls.
func TestSignalTakesTheBackendsCause(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	s.Signal(hook, true, Signal{Class: CallsFailing, Started: clk.Now(), Evidence: Evidence{Source: Metrics, At: clk.Now(), Detail: "API server metrics: 2 more calls failed", Calls: 2}})
	clk.Step(time.Second)
	s.Observe(probeSaw(CertExpiringSoon, clk.Now(), "the serving certificate expires in 3 days"))
	if got := sk.all(); len(got) != 2 || got[1].Class != CertExpiringSoon {
		t.Fatalf("reports %+v, want the counters' finding untouched by a warning", got)
	}
	clk.Step(time.Second)
	verdict := Evidence{Source: Kernel, At: clk.Now(), Detail: "no SYN from the API server reached pod ns/p's interface on node n1 since 12:00:00.000"}
	s.Observe(Observation{Webhook: hook, Backend: netip.MustParseAddrPort("10.0.0.9:443"), Class: BlockedBeforeNode, Started: clk.Now(), Evidence: verdict})
	got := sk.all()
	if len(got) != 4 || got[3].ID != got[0].ID || got[3].Class != BlockedBeforeNode {
		t.Fatalf("reports %+v, want the counters' finding re-classed to BlockedBeforeNode under its ID", got)
	}
	if ev := got[3].Evidence; len(ev) != 2 || ev[0].Source != Metrics || ev[1] != verdict {
		t.Errorf("evidence %+v, want the counters, then where the packets stop", ev)
	}

	// The path works again: the finding that named the cause resolves,
	// and the counters' finding with it.
	clk.Step(time.Second)
	s.Observe(Observation{Webhook: hook, Backend: netip.MustParseAddrPort("10.0.0.9:443"), Class: Healthy, Covers: Path,
		Evidence: Evidence{Source: Kernel, At: clk.Now(), Detail: "a SYN from 10.0.0.1 answered"}})
	open, _ := s.Findings()
	if len(open) != 1 || open[0].Class != CertExpiringSoon {
		t.Errorf("open %+v, want only the certificate warning left", open)
	}
}

// TestImpactsResolveWhenQuiet: impacts open once and resolve when they no
// longer hold.
func TestImpactsResolveWhenQuiet(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	imp := Impact{Kind: ImpactNodeNotReady, Node: "node-2", Object: "DaemonSet kube-system/aws-node", Since: clk.Now(), Detail: "node-2 is NotReady"}
	s.OpenImpact(hook, ServiceNotFound, imp, Evidence{Source: Event, Detail: "FailedCreate"})
	s.OpenImpact(hook, ServiceNotFound, imp, Evidence{Source: Event, Detail: "FailedCreate"})
	if got := sk.all(); len(got) != 1 || got[0].Impact == nil || got[0].Effect != WritesRejected {
		t.Fatalf("reports %+v, want one impact finding", got)
	}
	key := ImpactKey(hook.Ref, imp)
	s.ResolveQuiet(func(k Key) bool { return k == key })
	if len(sk.all()) != 1 {
		t.Fatal("an impact that holds was resolved")
	}
	s.ResolveQuiet(func(Key) bool { return false })
	if got := sk.all(); len(got) != 2 || got[1].Resolved == nil {
		t.Fatalf("reports %+v, want the impact resolved", got)
	}
}

// TestRestart: an agent restarted with a failure open goes on with the
// same finding and ID; a finding not seen again after the restart
// resolves, saying why, so no span is left without its resolution.
func TestRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "findings.json")
	s, sk, clk := newTestStore(t, path)
	s.Observe(probeSaw(CertExpired, clk.Now(), "x509: certificate has expired"))
	other := hook
	other.Ref.Name = "other.example.com"
	s.Observe(Observation{Webhook: other, Class: ServiceNotFound, Started: clk.Now(), Evidence: Evidence{Source: Objects, Detail: `service "svc" not found`}})
	ids := map[string]bool{}
	for _, f := range sk.all() {
		ids[f.ID] = true
	}
	s.Tick() // the agent ticks every second: the state file catches up

	s2, sk2, clk2 := newTestStore(t, path) // a new process, the same state file
	n, err := s2.Restore()
	if err != nil || n != 2 {
		t.Fatalf("restored %d (%v), want 2", n, err)
	}
	open, _ := s2.Findings()
	if len(open) != 2 || !ids[open[0].ID] || !ids[open[1].ID] {
		t.Fatalf("restored %+v, want the two findings with their IDs", open)
	}
	clk2.Step(10 * time.Second)
	s2.Observe(probeSaw(CertExpired, clk2.Now(), "x509: certificate has expired"))
	if len(sk2.all()) != 0 {
		t.Fatalf("the failure seen again was reported as new: %+v", sk2.all())
	}
	clk2.Step(30 * time.Second)
	s2.Tick()
	got := sk2.all()
	if len(got) != 1 || got[0].Webhook.Name != "other.example.com" || got[0].Resolved == nil ||
		!strings.Contains(got[0].Evidence[len(got[0].Evidence)-1].Detail, "after the agent restarted") {
		t.Fatalf("reports %+v, want the finding not seen again resolved, saying why", got)
	}
	open, _ = s2.Findings()
	if len(open) != 1 || open[0].Class != CertExpired || !ids[open[0].ID] {
		t.Fatalf("open %+v, want CertExpired with its first ID", open)
	}

	// A state file that is not one: the store starts empty and says so.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := writeFileAtomic(bad, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	s3, _, _ := newTestStore(t, bad)
	if n, err := s3.Restore(); err == nil || n != 0 || !strings.Contains(err.Error(), "starting empty") {
		t.Errorf("restoring garbage: %d, %v", n, err)
	}
}

// TestLeaseLost: cluster-wide findings outlive a Lease lost for less than
// the hand-over time (an API server outage) with their IDs, and resolve,
// saying why, when this agent does not lead again.
func TestLeaseLost(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	objects := Observation{Webhook: hook, Class: NoEndpoints, Started: clk.Now(), Evidence: Evidence{Source: Objects, Detail: `no endpoints available for service "svc"`}}
	s.Observe(objects)
	id := sk.all()[0].ID
	s.SetLeading(false)
	clk.Step(30 * time.Second) // the API server is down
	s.Tick()
	s.SetLeading(true)
	s.Observe(objects)
	clk.Step(2 * time.Minute)
	s.Tick()
	if open, _ := s.Findings(); len(open) != 1 || open[0].ID != id || len(sk.all()) != 1 {
		t.Fatalf("open %+v after the Lease came back, want the same finding %s", open, id)
	}
	s.SetLeading(false)
	clk.Step(time.Minute)
	s.Tick()
	got := sk.all()
	if len(got) != 2 || got[1].Resolved == nil || !strings.Contains(got[1].Evidence[len(got[1].Evidence)-1].Detail, "lost the cluster-checks Lease") {
		t.Fatalf("reports %+v, want the finding resolved as handed over", got)
	}
}

// TestBounds: evidence and resolved findings are bounded; webhooks and
// backends that are gone take their findings with them.
func TestBounds(t *testing.T) {
	s, sk, clk := newTestStore(t, "")
	s.Signal(hook, true, Signal{Class: CertExpired, Started: clk.Now(), Evidence: Evidence{Source: Event, Detail: "e0"}})
	for i := range 50 {
		s.Signal(hook, true, Signal{Class: CertExpired, Started: clk.Now(), Evidence: Evidence{Source: Event, Detail: "event " + string(rune('a'+i%26)) + string(rune('a'+i/26))}})
	}
	if open, _ := s.Findings(); len(open) != 1 || len(open[0].Evidence) != maxEvidence {
		t.Fatalf("evidence %d, want %d", len(open[0].Evidence), maxEvidence)
	}
	for i := range maxResolved + 10 {
		b := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i % 250)}), 443)
		s.Observe(Observation{Webhook: hook, Backend: b, Class: ConnectionRefused, Started: clk.Now(), Evidence: Evidence{Source: Probe, Detail: "refused"}})
	}
	s.Retain(func(k Key) bool { return k.Scope != ScopeBackend })
	open, resolved := s.Findings()
	if len(open) != 1 || len(resolved) != maxResolved {
		t.Fatalf("open %d resolved %d, want 1 and %d", len(open), len(resolved), maxResolved)
	}
	if last := sk.all()[len(sk.all())-1]; !strings.Contains(last.Evidence[len(last.Evidence)-1].Detail, "no longer exists") {
		t.Errorf("last resolution %+v", last)
	}
}
