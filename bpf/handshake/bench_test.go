//go:build linux

package handshake_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// BenchmarkTracingOverhead measures, side by side in one run, what tracing
// costs a webhook call: each iteration makes one TLS handshake (API-server
// style: ServerName and a private CA) to a backend that is traced and one to
// an identical backend that is not, on two veths of the same kind. It
// reports both handshake times, their ratio, and the programs' own cost per
// packet from the kernel's bpf_stats.
func BenchmarkTracingOverhead(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if err := podnet.Guard(); err != nil {
		b.Fatal(err)
	}
	ca, err := certs.NewCA("bench-ca")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	cert, err := ca.Serving([]string{"webhook.default.svc"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	serve := func(ip string) *podnet.Pod {
		pod, err := podnet.New("bench", netip.MustParseAddr(ip))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { pod.Close() })
		ln, err := pod.Listen(backendPort)
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ErrorLog: log.New(io.Discard, "", 0)}
		go srv.ServeTLS(ln, "", "")
		b.Cleanup(func() { srv.Close() })
		return pod
	}
	traced, plain := serve("10.0.251.2"), serve("10.0.251.3")

	tr, err := handshake.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Attach(traced.IfIndex); err != nil {
		b.Fatal(err)
	}
	if err := tr.AddBackend(netip.AddrPortFrom(traced.Addr, backendPort)); err != nil {
		b.Fatal(err)
	}
	go func() { // drain events as the agent would
		for {
			if _, err := tr.Read(); err != nil {
				return
			}
		}
	}()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()

	cfg := &tls.Config{ServerName: "webhook.default.svc", RootCAs: ca.Pool()}
	handshakeWith := func(addr netip.Addr) time.Duration {
		start := time.Now()
		conn, err := tls.Dial("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(backendPort)), cfg)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		conn.Close()
		return d
	}
	for range 20 { // warm up both paths
		handshakeWith(traced.Addr)
		handshakeWith(plain.Addr)
	}
	before := progStats(b, tr)
	var tracedTotal, plainTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 { // alternate the order so neither path always goes first
			tracedTotal += handshakeWith(traced.Addr)
			plainTotal += handshakeWith(plain.Addr)
		} else {
			plainTotal += handshakeWith(plain.Addr)
			tracedTotal += handshakeWith(traced.Addr)
		}
	}
	b.StopTimer()
	after := progStats(b, tr)
	runs := after.RunCount - before.RunCount
	b.ReportMetric(float64(tracedTotal.Nanoseconds())/float64(b.N), "traced-ns/handshake")
	b.ReportMetric(float64(plainTotal.Nanoseconds())/float64(b.N), "untraced-ns/handshake")
	b.ReportMetric(float64(tracedTotal)/float64(plainTotal), "traced/untraced")
	if runs > 0 {
		b.ReportMetric(float64((after.Runtime-before.Runtime).Nanoseconds())/float64(runs), "bpf-ns/packet")
		b.ReportMetric(float64(runs)/float64(b.N), "packets/handshake")
	}
}

// progStats is the program's run statistics, both directions.
func progStats(b *testing.B, tr *handshake.Tracer) ebpf.ProgramStats {
	s, err := tr.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return s
}
