//go:build linux

package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/internal/certs"
	"github.com/hookscope/hookscope/internal/podnet"
)

// The bench pod's ports: a traced webhook backend, an untraced server on the
// same pod (the rejected path), and a traced bulk sink for throughput.
const (
	webhookPort = 8443
	otherPort   = 9443
	sinkPort    = 8444
)

// TestBenchReport measures what `make bench` reports and writes it to
// $HOOKSCOPE_BENCH_REPORT (bench-report): the programs' ns per event on the
// webhook and the rejected path, and bulk throughput to a traced backend
// with the programs attached vs detached, alternated in one run. It runs
// only when asked: timings belong in the report, not in pass/fail.
func TestBenchReport(t *testing.T) {
	dir := os.Getenv("HOOKSCOPE_BENCH_REPORT")
	if dir == "" {
		t.Skip("set HOOKSCOPE_BENCH_REPORT=DIR (make bench) to measure and write the report")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and creates a network namespace")
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	rig := newRig(t)
	rep := &Report{GeneratedAt: time.Now(), Kernel: kernelRelease()}

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()

	// The rejected path first: the tracepoints run for every TCP socket on
	// the machine, so the webhook phase's other runs are priced at it.
	const calls = 400
	rejectedNs := map[string]float64{}
	for _, path := range []struct {
		name string
		port int
	}{{"rejected", otherPort}, {"webhook", webhookPort}} {
		before, tpBefore, mBefore := rig.programStats(t), rig.tracepointStats(t), rig.matched(t)
		for range calls {
			rig.call(t, path.port)
		}
		after, tpAfter, mAfter := rig.programStats(t), rig.tracepointStats(t), rig.matched(t)
		cs := costs(before, after, path.name)
		for name, a := range tpAfter {
			b := tpBefore[name]
			runs := int64(a.RunCount - b.RunCount)
			ns := float64((a.Runtime - b.Runtime).Nanoseconds())
			c := ProgramCost{Program: "tp_btf/" + name, Path: path.name}
			if path.name == "rejected" {
				if runs <= 0 {
					continue
				}
				c.Events, c.NsPerEvent = runs, ns/float64(runs)
				rejectedNs[name] = c.NsPerEvent
			} else {
				matched := int64(mAfter[name] - mBefore[name])
				if matched <= 0 {
					continue
				}
				c.Events, c.NsPerEvent = matched, (ns-float64(runs-matched)*rejectedNs[name])/float64(matched)
			}
			cs = append(cs, c)
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Program < cs[j].Program })
		for _, c := range cs {
			rep.BPF = append(rep.BPF, c)
			t.Logf("%s %s: %.1f ns/event over %d events", c.Program, c.Path, c.NsPerEvent, c.Events)
		}
	}

	rep.Throughput, rep.ThroughputRatio = rig.throughput(t, 128<<20, 12)
	t.Logf("throughput attached %.1f MB/s, detached %.1f MB/s, ratio %.4f", rep.Throughput.AttachedMBps, rep.Throughput.DetachedMBps, rep.ThroughputRatio)
	// Update, not Write: TestBenchScale adds its sections to the same report.
	err = Update(dir, func(r *Report) {
		r.Kernel, r.BPF, r.ThroughputRatio, r.Throughput = rep.Kernel, rep.BPF, rep.ThroughputRatio, rep.Throughput
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s/report.json and report.md", dir)
}

type rig struct {
	pod    *podnet.Pod
	tracer *handshake.Tracer
	tcp    *tcpstate.Tracer
	client *tls.Config
}

func (r *rig) tracepointStats(t *testing.T) map[string]ebpf.ProgramStats {
	s, err := r.tcp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *rig) matched(t *testing.T) map[string]uint64 {
	c, err := r.tcp.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.Matched
}

func newRig(t *testing.T) *rig {
	ca, err := certs.NewCA("bench-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Serving([]string{"webhook.bench.svc"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pod, err := podnet.New("benchrep", netip.MustParseAddr("10.0.252.2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.Close() })
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	for _, port := range []int{webhookPort, otherPort} {
		ln, err := pod.Listen(port)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{
			Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"response":{"allowed":true}}`)) }),
			TLSConfig: srvCfg, ErrorLog: log.New(io.Discard, "", 0),
		}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() { srv.Close() })
	}
	sink, err := pod.Listen(sinkPort)
	if err != nil {
		t.Fatal(err)
	}
	tlsSink := tls.NewListener(sink, srvCfg)
	t.Cleanup(func() { tlsSink.Close() })
	go func() {
		for {
			c, err := tlsSink.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				_, _ = fmt.Fprintf(c, "%d\n", n) // the client waits for this: every byte arrived
			}()
		}
	}()

	tr, err := handshake.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	for _, port := range []uint16{webhookPort, sinkPort} {
		if err := tr.AddBackend(netip.AddrPortFrom(pod.Addr, port)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Attach(pod.IfIndex); err != nil {
		t.Fatal(err)
	}
	tcp, err := tcpstate.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	for _, port := range []uint16{webhookPort, sinkPort} {
		if err := tcp.AddBackend(netip.AddrPortFrom(pod.Addr, port)); err != nil {
			t.Fatal(err)
		}
	}
	go func() { // drain events as the agent does
		for {
			if _, err := tr.Read(); err != nil {
				return
			}
		}
	}()
	go func() {
		for {
			if _, err := tcp.Read(); err != nil {
				return
			}
		}
	}()
	return &rig{pod: pod, tracer: tr, tcp: tcp, client: &tls.Config{ServerName: "webhook.bench.svc", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}}
}

// call makes one webhook-like call: a new connection, a TLS handshake, one
// POST and its answer.
func (r *rig) call(t *testing.T, port int) {
	c, err := tls.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(port)), r.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = io.WriteString(c, "POST /validate HTTP/1.1\r\nHost: webhook.bench.svc\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
	if err == nil {
		_, err = io.Copy(io.Discard, c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (r *rig) programStats(t *testing.T) map[string]ebpf.ProgramStats {
	s, err := r.tracer.ProgramStats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// costs turns two bpf_stats snapshots into ns per event for each program.
func costs(before, after map[string]ebpf.ProgramStats, path string) []ProgramCost {
	var out []ProgramCost
	for name, a := range after {
		b := before[name]
		runs := int64(a.RunCount - b.RunCount)
		if runs <= 0 {
			continue
		}
		out = append(out, ProgramCost{Program: name, Path: path, Events: runs,
			NsPerEvent: float64((a.Runtime - b.Runtime).Nanoseconds()) / float64(runs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Program < out[j].Program })
	return out
}

// throughput sends size bytes over TLS to the traced sink, runs times with
// the programs attached and runs times detached, alternating which goes
// first, and returns the figures and attached/detached.
func (r *rig) throughput(t *testing.T, size int64, runs int) (*Throughput, float64) {
	buf := make([]byte, 256<<10)
	send := func() time.Duration {
		c, err := tls.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(sinkPort)), r.client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := c.Write(buf[:min(int64(len(buf)), left)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var got int64
		if _, err := fmt.Fscan(c, &got); err != nil || got != size {
			t.Fatalf("sink got %d bytes (%v), want %d", got, err, size)
		}
		return time.Since(start)
	}
	attach := func(on bool) {
		var err error
		if on {
			err = r.tracer.Attach(r.pod.IfIndex)
		} else {
			err = r.tracer.Detach(r.pod.IfIndex)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	send() // warm up
	var attached, detached time.Duration
	for i := range runs {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		for _, on := range order {
			attach(on)
			if d := send(); on {
				attached += d
			} else {
				detached += d
			}
		}
	}
	attach(true)
	mbps := func(d time.Duration) float64 { return float64(size*int64(runs)) / d.Seconds() / 1e6 }
	return &Throughput{
		Bytes: size, Runs: runs, AttachedMBps: mbps(attached), DetachedMBps: mbps(detached),
		AttachedPrograms:  "handshake tcx programs on the veth; tcpstate tracepoints stay attached in both",
		TransferDirection: "TLS 1.3 bulk from the host to a traced backend in a network namespace over its veth",
	}, detached.Seconds() / attached.Seconds()
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
