//go:build linux

package agent

import (
	"net"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// TestFixedByARestart: an expired certificate is fixed by restarting the
// webhook with a renewed one. While it restarts its port is closed for a
// moment, and a call refused then starts a probe that is refused too: the
// finding resolves as the certificate it named, it does not turn into
// ConnectionRefused on the way (which would leave the Normal Event saying
// the webhook "no longer fails with ConnectionRefused").
func TestFixedByARestart(t *testing.T) {
	k := startKernelAgent(t, "restart", 5*time.Second)
	valid, expired := k.certificates(t, []string{kernelService + ".hooks.svc"}, nil, 30*24*time.Hour)
	srv := k.serve(t, expired)
	f := k.waitFor(t, "CertExpired", 10*time.Second, func(open []findings.Finding) bool {
		return len(open) == 1 && open[0].Class == findings.CertExpired
	})

	// The restart: the port closed for 150 ms, and a call refused in it.
	srv.Close()
	if c, err := net.DialTimeout("tcp", kernelPodIP+":8443", time.Second); err == nil {
		c.Close()
		t.Fatal("the closed port accepted a connection")
	}
	time.Sleep(150 * time.Millisecond)
	srv = k.serve(t, valid)
	defer srv.Close()

	k.waitFor(t, "resolved", 5*time.Second, func(open []findings.Finding) bool { return len(open) == 0 })
	_, resolved := k.store.Findings()
	if len(resolved) != 1 || resolved[0].ID != f.ID || resolved[0].Superseded != "" {
		t.Fatalf("resolved %+v; want only the CertExpired finding %s, resolved, not superseded", resolved, f.ID)
	}
}
