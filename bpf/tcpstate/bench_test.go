//go:build linux

package tcpstate_test

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/internal/podnet"
)

// BenchmarkTracepoints measures, side by side in one run, what each program
// costs per tracepoint hit (bpf_stats run time / run count) on three paths:
//
//   - rejected: no backend is configured, so every hit fails the first check
//     (the port bitmap); this is what all other TCP traffic on a node costs.
//   - rejected_addr: a backend on the same port but another IP, so the port
//     check passes and the backend hash lookup misses.
//   - webhook: the traffic goes to a backend; the cost per matched hit is the
//     phase's run time less its unmatched hits (other traffic on the machine)
//     at the rejected price, divided by the programs' own matched counters.
//
// Each iteration makes one connection to the pod (connect, close) and one
// connect to a closed port of it (refused: a RST received and one sent);
// each phase ends with one episode of retransmissions (16 connections whose
// ACKs the pod drops for 0.6 s). Metrics: ns/event-<program>-<path> and
// runs-<program>-<path> (tracepoint hits measured), with <program> one of
// set_state, receive_reset, send_reset, retransmit; and
// ns/event-<program>-floor, an empty program alone on the same tracepoint in
// a phase of its own before the tracer is loaded: what any program there
// costs (the call, cold caches on a tracepoint that fires rarely, and
// bpf_stats' own clock reads), before any work of hookscope's.
func BenchmarkTracepoints(b *testing.B) {
	needRoot(b)
	if err := podnet.Guard(); err != nil {
		b.Fatal(err)
	}
	pod, err := podnet.New("tcpstb", netip.MustParseAddr("10.0.77.20"))
	if err != nil {
		b.Fatal(err)
	}
	defer pod.Close()
	ln, err := pod.Listen(backendPort)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	const closedPort = backendPort + 1
	server := netip.AddrPortFrom(pod.Addr, backendPort)
	refused := netip.AddrPortFrom(pod.Addr, closedPort)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enabling bpf_stats (needs CAP_SYS_ADMIN): %v", err)
	}
	defer stats.Close()

	connect := func() {
		c, err := net.DialTimeout("tcp", server.String(), 2*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	}
	refuse := func() {
		if c, err := net.DialTimeout("tcp", refused.String(), 2*time.Second); err == nil {
			c.Close()
			b.Fatal("connect to the closed port succeeded")
		}
	}
	retransmissions := func() {
		var conns []net.Conn
		for range 16 {
			c, err := net.DialTimeout("tcp", server.String(), 2*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		client := netip.MustParseAddrPort(conns[0].LocalAddr().String()).Addr()
		restore := blackhole(b, pod, client)
		for _, c := range conns {
			c.Write([]byte("review"))
		}
		time.Sleep(600 * time.Millisecond)
		restore()
		for _, c := range conns {
			c.Close()
		}
	}
	for range 20 { // warm up
		connect()
		refuse()
	}

	// The floor phase: the empty programs alone, before the tracer is
	// loaded, so that they run as the tracer's programs will, first and
	// only on their tracepoints.
	floor, err := tcpstate.AttachFloor()
	if err != nil {
		b.Fatal(err)
	}
	defer floor.Close()
	var tr *tcpstate.Tracer
	type sample struct {
		stats   map[string]ebpf.ProgramStats
		matched map[string]uint64
	}
	snap := func() sample {
		if tr == nil {
			s, err := floor.Stats()
			if err != nil {
				b.Fatal(err)
			}
			return sample{stats: s}
		}
		s, err := tr.Stats()
		if err != nil {
			b.Fatal(err)
		}
		c, err := tr.Counters()
		if err != nil {
			b.Fatal(err)
		}
		return sample{s, c.Matched}
	}
	phase := func() (before, after sample) {
		before = snap()
		for range b.N {
			connect()
			refuse()
		}
		retransmissions()
		time.Sleep(100 * time.Millisecond) // let the last closes happen
		return before, snap()
	}

	b.ResetTimer()
	floorBefore, floorAfter := phase()
	b.StopTimer()
	if err := floor.Close(); err != nil {
		b.Fatal(err)
	}
	if tr, err = tcpstate.Load(); err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	go func() { // drain events as the agent would
		for {
			if _, err := tr.Read(); err != nil {
				return
			}
		}
	}()
	for range 20 {
		connect()
		refuse()
	}
	b.StartTimer()
	rejBefore, rejAfter := phase()

	other := netip.AddrPortFrom(netip.MustParseAddr("10.0.77.21"), backendPort) // never dialled
	otherClosed := netip.AddrPortFrom(other.Addr(), closedPort)
	for _, ap := range []netip.AddrPort{other, otherClosed} {
		if err := tr.AddBackend(ap); err != nil {
			b.Fatal(err)
		}
	}
	addrBefore, addrAfter := phase()

	for _, ap := range []netip.AddrPort{server, refused} {
		if err := tr.AddBackend(ap); err != nil {
			b.Fatal(err)
		}
	}
	hookBefore, hookAfter := phase()
	b.StopTimer()

	for _, p := range tcpstate.Programs {
		short := metricName(p)
		b.ReportMetric(perRun(floorAfter.stats[p].Runtime-floorBefore.stats[p].Runtime, floorAfter.stats[p].RunCount-floorBefore.stats[p].RunCount), "ns/event-"+short+"-floor")
		rejRuns := rejAfter.stats[p].RunCount - rejBefore.stats[p].RunCount
		rejNs := perRun(rejAfter.stats[p].Runtime-rejBefore.stats[p].Runtime, rejRuns)
		b.ReportMetric(rejNs, "ns/event-"+short+"-rejected")
		b.ReportMetric(float64(rejRuns), "runs-"+short+"-rejected")

		addrRuns := addrAfter.stats[p].RunCount - addrBefore.stats[p].RunCount
		b.ReportMetric(perRun(addrAfter.stats[p].Runtime-addrBefore.stats[p].Runtime, addrRuns), "ns/event-"+short+"-rejected_addr")
		b.ReportMetric(float64(addrRuns), "runs-"+short+"-rejected_addr")

		runs := hookAfter.stats[p].RunCount - hookBefore.stats[p].RunCount
		matched := hookAfter.matched[p] - hookBefore.matched[p]
		if matched > runs {
			matched = runs
		}
		total := float64((hookAfter.stats[p].Runtime - hookBefore.stats[p].Runtime).Nanoseconds())
		if matched > 0 {
			b.ReportMetric((total-float64(runs-matched)*rejNs)/float64(matched), "ns/event-"+short+"-webhook")
		}
		b.ReportMetric(float64(matched), "runs-"+short+"-webhook")
	}
}

func metricName(program string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(program, "inet_sock_"), "tcp_"), "_skb")
}

func perRun(d time.Duration, runs uint64) float64 {
	if runs == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / float64(runs)
}
