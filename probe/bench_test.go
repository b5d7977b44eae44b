package probe

import (
	"context"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/certs"
)

// BenchmarkProbe measures one API-server-style probe (TCP, TLS 1.3,
// verification against the caBundle) of a loopback backend.
func BenchmarkProbe(b *testing.B) {
	ca, err := certs.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Serving([]string{"hook.ns.svc"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	target := serveTLS(b, cert)
	b.ResetTimer()
	for range b.N {
		if r := Probe(context.Background(), target, "hook.ns.svc", ca.PEM, time.Second); r.Class != findings.Healthy {
			b.Fatalf("probe: %s", r)
		}
	}
}
