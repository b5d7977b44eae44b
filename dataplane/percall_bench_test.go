//go:build linux

package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// BenchmarkKernelPerCall is the kernel time one traced webhook call costs,
// every program summed (bpf_stats): the handshake programs on the backend's
// veth and the TCP tracepoints, with the agent's Kernel and Assembler
// reading their events. A call is an AdmissionReview-sized POST (about 1 KiB
// each way) from the host to a backend in a network namespace:
// new_connection opens a TLS connection per call, as the API server does
// after an idle spell or with many webhooks (no session resumption);
// kept_alive sends it on one HTTP/2 connection. Reported: kernel-ns/call,
// ring-records/call (what the agent reads), and the calls the agent saw.
func BenchmarkKernelPerCall(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if err := podnet.Guard(); err != nil {
		b.Fatal(err)
	}
	pod, err := podnet.New("percall", netip.MustParseAddr("10.0.252.2"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pod.Close() })
	ca, err := certs.NewCA("percall-ca")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Serving([]string{testServerName}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := pod.Listen(8443)
	if err != nil {
		b.Fatal(err)
	}
	answer := bytes.Repeat([]byte("a"), 900)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = w.Write(answer)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	backend := netip.AddrPortFrom(pod.Addr, 8443)

	k, seen, records := perCallKernel(b, backend)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()

	body := bytes.Repeat([]byte("r"), 1000)
	url := "https://" + backend.String() + "/validate"
	tlsCfg := func() *tls.Config {
		return &tls.Config{ServerName: testServerName, RootCAs: ca.Pool(), NextProtos: []string{"h2"}}
	}
	modes := []struct {
		name   string
		client func() *http.Client
	}{
		{"new_connection", func() *http.Client {
			return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg(), DisableKeepAlives: true, ForceAttemptHTTP2: true}}
		}},
		{"kept_alive", func() *http.Client {
			return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg(), ForceAttemptHTTP2: true}}
		}},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			c := m.client()
			call := func() {
				resp, err := c.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			for range 20 {
				call()
			}
			time.Sleep(200 * time.Millisecond)
			progs0 := programNs(b, k)
			counted0 := tcCounters(b, k)
			before, r0, s0 := kernelNs(b, k), records.Load(), seen.Load()
			b.ResetTimer()
			for range b.N {
				call()
			}
			b.StopTimer()
			c.CloseIdleConnections()
			time.Sleep(300 * time.Millisecond) // the last calls' closes and events
			after := kernelNs(b, k)
			for name, p := range programNs(b, k) {
				if b.N < 100 || p.RunCount == progs0[name].RunCount {
					continue
				}
				b.Logf("%s: %.2f runs/call, %.0f ns/run", name, float64(p.RunCount-progs0[name].RunCount)/float64(b.N),
					float64(p.Runtime-progs0[name].Runtime)/float64(max(1, p.RunCount-progs0[name].RunCount)))
			}
			// Of the TC program's runs, those it reads (not bare ACKs), and
			// those whose headers had to be pulled in from paged data.
			if counted := tcCounters(b, k); b.N >= 100 {
				b.Logf("handshake: %.2f segments read/call, %.2f headers pulled/call", float64(counted.Packets-counted0.Packets)/float64(b.N),
					float64(counted.HeadersPulled-counted0.HeadersPulled)/float64(b.N))
			}
			b.ReportMetric(float64(after-before)/float64(b.N), "kernel-ns/call")
			b.ReportMetric(float64(records.Load()-r0)/float64(b.N), "ring-records/call")
			b.ReportMetric(float64(seen.Load()-s0)/float64(b.N), "responses-seen/call")
		})
	}
}

// perCallKernel loads both tracers into a Kernel that traces backend, and
// counts the records it reads and the responses its Assembler reports.
func perCallKernel(b *testing.B, backend netip.AddrPort) (k *Kernel, responses, records *atomic.Int64) {
	b.Helper()
	tracer, err := handshake.Load()
	if err != nil {
		b.Fatal(err)
	}
	tcp, err := tcpstate.Load()
	if err != nil {
		tracer.Close()
		b.Fatal(err)
	}
	responses, records = &atomic.Int64{}, &atomic.Int64{}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	asm := NewAssembler(Config{Log: logger, Output: Output{
		Event:    func(string) { records.Add(1) },
		Response: func(callout.Ref, time.Duration) { responses.Add(1) },
	}})
	k = NewKernel(tracer, tcp, asm, logger)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go k.Run(ctx)
	w := callout.Webhook{Ref: callout.Ref{Name: "v.percall.example.com"}, TimeoutSeconds: 10}
	if err := k.SetBackends([]Backend{{Addr: backend, Webhooks: []callout.Webhook{w}}}); err != nil {
		b.Fatal(err)
	}
	return k, responses, records
}

// kernelNs is the run time of every program of k so far.
func kernelNs(b *testing.B, k *Kernel) time.Duration {
	b.Helper()
	var sum time.Duration
	for _, s := range programNs(b, k) {
		sum += s.Runtime
	}
	return sum
}

// tcCounters is the TC program's counters so far.
func tcCounters(b *testing.B, k *Kernel) handshake.Counters {
	b.Helper()
	c, err := k.tracer.Counters()
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// programNs is each program's statistics so far.
func programNs(b *testing.B, k *Kernel) map[string]ebpf.ProgramStats {
	b.Helper()
	out, err := k.tracer.ProgramStats()
	if err != nil {
		b.Fatal(err)
	}
	tp, err := k.tcp.Stats()
	if err != nil {
		b.Fatal(err)
	}
	for name, s := range tp {
		out[name] = s
	}
	return out
}
