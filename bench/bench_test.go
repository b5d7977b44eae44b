//go:build linux

package bench

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
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
	dir := reportDir(t, "loads BPF programs and creates a network namespace")
	rig := newRig(t)
	rep := &Report{GeneratedAt: time.Now(), Kernel: kernelRelease()}

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()

	// The floor first, before the tracer is loaded, with the same calls.
	const calls = 400
	rep.TracepointFloor = rig.tracepointFloor(t, calls)
	if all, ok := allTracepoints(rep.TracepointFloor, "empty_program"); ok {
		rep.TracepointFloor = append(rep.TracepointFloor, all)
	}
	for _, c := range rep.TracepointFloor {
		t.Logf("%s floor (an empty program): %.1f ns/event over %d events", c.Program, c.NsPerEvent, c.Events)
	}
	rig.loadTCP(t)
	for range 20 {
		rig.call(t, otherPort)
	}

	// The rejected path next: the tracepoints run for every TCP socket on
	// the machine, so the webhook phase's other runs are priced at it.
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
		if all, ok := allTracepoints(cs, path.name); ok {
			cs = append(cs, all)
		}
		for _, c := range cs {
			rep.BPF = append(rep.BPF, c)
			t.Logf("%s %s: %.1f ns/event over %d events", c.Program, c.Path, c.NsPerEvent, c.Events)
		}
	}

	// The ratio is measured as the agent runs: with bpf_stats off (its two
	// clock reads per run would be priced into every packet).
	stats.Close()
	rep.Throughput, rep.ThroughputRatio = rig.throughput(t, 32<<20, pairs())
	t.Logf("throughput attached %.1f MB/s, detached %.1f MB/s, ratio %.4f (95%% CI %.4f-%.4f)",
		rep.Throughput.AttachedMBps, rep.Throughput.DetachedMBps, rep.ThroughputRatio,
		rep.Throughput.RatioCI95[0], rep.Throughput.RatioCI95[1])
	// Update, not Write: TestBenchScale adds its sections to the same report.
	err = Update(dir, func(r *Report) {
		r.Kernel, r.BPF, r.ThroughputRatio, r.Throughput = rep.Kernel, rep.BPF, rep.ThroughputRatio, rep.Throughput
		r.TracepointFloor = rep.TracepointFloor
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s/report.json and report.md", dir)
}

// allTracepoints pools the tracepoint programs' rows of one path into one,
// "tp_btf/*": their run time over all their events, the mean cost of a
// tracepoint event whichever tracepoint it hits.
func allTracepoints(cs []ProgramCost, path string) (ProgramCost, bool) {
	all := ProgramCost{Program: "tp_btf/*", Path: path}
	var ns float64
	for _, c := range cs {
		if strings.HasPrefix(c.Program, "tp_btf/") {
			all.Events += c.Events
			ns += c.NsPerEvent * float64(c.Events)
		}
	}
	if all.Events == 0 {
		return all, false
	}
	all.NsPerEvent = ns / float64(all.Events)
	return all, true
}

// reportDir returns $HOOKSCOPE_BENCH_REPORT, where a bench test adds its
// figures, once the network guard is in. It skips the test when nobody
// asked for figures (timings belong in the report, not in pass/fail) or
// when not root (why says what needs it).
func reportDir(t *testing.T, why string) string {
	dir := os.Getenv("HOOKSCOPE_BENCH_REPORT")
	if dir == "" {
		t.Skip("set HOOKSCOPE_BENCH_REPORT=DIR (make bench) to measure and write the report")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	return dir
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
				defer pin(1)()
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
	go func() { // drain events as the agent does
		for {
			if _, err := tr.Read(); err != nil {
				return
			}
		}
	}()
	return &rig{pod: pod, tracer: tr, client: &tls.Config{ServerName: "webhook.bench.svc", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}}
}

// loadTCP loads the tcpstate tracer (the rig starts without it, so that
// the tracepoints' floor is measured with nothing else on them).
func (r *rig) loadTCP(t *testing.T) {
	tcp, err := tcpstate.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	for _, port := range []uint16{webhookPort, sinkPort} {
		if err := tcp.AddBackend(netip.AddrPortFrom(r.pod.Addr, port)); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for {
			if _, err := tcp.Read(); err != nil {
				return
			}
		}
	}()
	r.tcp = tcp
}

// tracepointFloor is an empty program alone on each tracepoint over calls
// of the rejected path: what any program there costs before hookscope's
// own work (the call, cold caches, bpf_stats' clock reads).
func (r *rig) tracepointFloor(t *testing.T, calls int) []ProgramCost {
	floor, err := tcpstate.AttachFloor()
	if err != nil {
		t.Fatal(err)
	}
	defer floor.Close()
	for range 20 { // warm up
		r.call(t, otherPort)
	}
	before, err := floor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for range calls {
		r.call(t, otherPort)
	}
	after, err := floor.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var out []ProgramCost
	for _, name := range tcpstate.Programs {
		runs := int64(after[name].RunCount - before[name].RunCount)
		if runs <= 0 {
			continue
		}
		out = append(out, ProgramCost{
			Program: "tp_btf/" + name, Path: "empty_program", Events: runs,
			NsPerEvent: float64((after[name].Runtime - before[name].Runtime).Nanoseconds()) / float64(runs),
		})
	}
	return out
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

// send sends size bytes over a new TLS connection to the traced sink from
// core 0 (the sink reads on core 1) and returns how long until the sink
// said it had them all.
func (r *rig) send(t *testing.T, size int64) time.Duration {
	buf := make([]byte, 256<<10)
	c, err := tls.Dial("tcp", net.JoinHostPort(r.pod.Addr.String(), strconv.Itoa(sinkPort)), r.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer pin(0)()
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

// throughput sends size bytes over TLS to the traced sink, runs times with
// the programs attached and runs times detached, alternating which goes
// first, and returns the figures and attached/detached.
func (r *rig) throughput(t *testing.T, size int64, runs int) (*Throughput, float64) {
	send := func() time.Duration { return r.send(t, size) }
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
	pairs := make([][2]time.Duration, 0, runs) // attached, detached
	for i := range runs {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		var on, off time.Duration
		for _, a := range order {
			attach(a)
			if d := send(); a {
				on = d
			} else {
				off = d
			}
		}
		attached += on
		detached += off
		pairs = append(pairs, [2]time.Duration{on, off})
	}
	attach(true)
	low, high := bootstrapCI(pairs, 0.95)

	// What the programs cost per packet: more attached runs, with bpf_stats.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enabling bpf_stats: %v", err)
	}
	defer stats.Close()
	const costRuns = 4
	var wall time.Duration
	before := r.programStats(t)
	for range costRuns {
		wall += send()
	}
	var programs []BulkCost
	for _, c := range costs(before, r.programStats(t), "bulk") {
		programs = append(programs, BulkCost{Program: c.Program, Packets: c.Events / costRuns, NsPerEvent: c.NsPerEvent,
			WallShare: c.NsPerEvent * float64(c.Events) / float64(wall.Nanoseconds())})
	}
	mbps := func(d time.Duration) float64 { return float64(size*int64(runs)) / d.Seconds() / 1e6 }
	return &Throughput{
		Bytes: size, Runs: runs, AttachedMBps: mbps(attached), DetachedMBps: mbps(detached),
		AttachedPrograms:  "handshake tcx programs on the veth; tcpstate tracepoints stay attached in both",
		TransferDirection: "TLS 1.3 bulk from the host to a traced backend in a network namespace over its veth",
		Programs:          programs,
		RatioCI95:         [2]float64{low, high},
	}, detached.Seconds() / attached.Seconds()
}

// bootstrapCI is a confidence interval of sum(detached)/sum(attached) over
// pairs (attached, detached), by resampling the pairs (a fixed seed: the
// same pairs give the same interval).
func bootstrapCI(pairs [][2]time.Duration, level float64) (low, high float64) {
	const resamples = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	ratios := make([]float64, resamples)
	for i := range ratios {
		var on, off time.Duration
		for range pairs {
			p := pairs[rng.IntN(len(pairs))]
			on += p[0]
			off += p[1]
		}
		ratios[i] = off.Seconds() / on.Seconds()
	}
	sort.Float64s(ratios)
	tail := (1 - level) / 2
	return ratios[int(tail*resamples)], ratios[int((1-tail)*resamples)-1]
}

// pin keeps the calling goroutine on one OS thread bound to cpu until the
// returned function is called: the transfer's sender and its sink each get
// a core of their own, the same in attached and detached runs.
func pin(cpu int) func() {
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if unix.SchedGetaffinity(0, &old) != nil || cpu >= runtime.NumCPU() {
		return runtime.UnlockOSThread
	}
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}
}

// pairs is how many alternated pairs of bulk runs TestBenchReport makes:
// 600 (about 40 s; the ratio's 95% CI is about +-1% here), or
// $HOOKSCOPE_BENCH_PAIRS.
func pairs() int {
	if n, err := strconv.Atoi(os.Getenv("HOOKSCOPE_BENCH_PAIRS")); err == nil && n > 0 {
		return n
	}
	return 600
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
