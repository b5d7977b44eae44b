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

	// The tracepoints fire a few hundred times per path, so one interrupt
	// during a run (bpf_stats counts it) moves a path's mean by tens of ns:
	// each path is measured in rounds, and its figure is the rounds' median.
	const calls, rounds = 400, 8

	// The floor first, before the tracer is loaded, with the same calls.
	floor, err := tcpstate.AttachFloor()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // warm up
		rig.call(t, otherPort)
	}
	rep.TracepointFloor = tracepointCosts(rig.rounds(t, otherPort, calls, rounds, floorSnapshot(t, floor)), "empty_program", nil)
	if err := floor.Close(); err != nil {
		t.Fatal(err)
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
	var rejected []ProgramCost
	for _, path := range []struct {
		name string
		port int
	}{{"rejected", otherPort}, {"webhook", webhookPort}} {
		before := rig.programStats(t)
		tp := rig.rounds(t, path.port, calls, rounds, rig.tracepointSnapshot(t))
		cs := costs(before, rig.programStats(t), path.name)
		tpCosts := tracepointCosts(tp, path.name, rejected)
		if path.name == "rejected" {
			rejected = tpCosts
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].Program < cs[j].Program })
		cs = append(cs, tpCosts...)
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

// tpSample is the tracepoint programs' bpf_stats and matched counters.
type tpSample struct {
	stats   map[string]ebpf.ProgramStats
	matched map[string]uint64 // nil for the empty programs
}

// tpRound is one round of calls as one tracepoint program saw it.
type tpRound struct {
	runs, matched int64
	ns            float64
}

func floorSnapshot(t *testing.T, floor *tcpstate.Floor) func() tpSample {
	return func() tpSample {
		s, err := floor.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return tpSample{stats: s}
	}
}

func (r *rig) tracepointSnapshot(t *testing.T) func() tpSample {
	return func() tpSample {
		s, err := r.tcp.Stats()
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.tcp.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return tpSample{s, c.Matched}
	}
}

// rounds makes calls to port in n rounds and returns each tracepoint
// program's rounds.
func (r *rig) rounds(t *testing.T, port, calls, n int, snap func() tpSample) map[string][]tpRound {
	out := map[string][]tpRound{}
	for range n {
		before := snap()
		for range calls / n {
			r.call(t, port)
		}
		after := snap()
		for name, a := range after.stats {
			b := before.stats[name]
			out[name] = append(out[name], tpRound{
				runs:    int64(a.RunCount - b.RunCount),
				matched: int64(after.matched[name] - before.matched[name]),
				ns:      float64((a.Runtime - b.Runtime).Nanoseconds()),
			})
		}
	}
	return out
}

// tracepointCosts turns rounds into one row per program and a pooled row
// ("tp_btf/*", every tracepoint event whichever program ran), each the
// median over the rounds. On the webhook path (rejected given), a round's
// cost per matched run is its run time less its unmatched runs at the
// rejected path's price; elsewhere every run counts.
func tracepointCosts(byProgram map[string][]tpRound, path string, rejected []ProgramCost) []ProgramCost {
	rejNs := map[string]float64{}
	for _, c := range rejected {
		rejNs[c.Program] = c.NsPerEvent
	}
	row := func(name string, rs []tpRound) (ProgramCost, bool) {
		c := ProgramCost{Program: name, Path: path}
		var xs []float64
		for _, r := range rs {
			if r.runs > 0 {
				c.Events += r.runs
				xs = append(xs, r.ns/float64(r.runs))
			}
		}
		if len(xs) == 0 {
			return c, false
		}
		c.NsPerEvent = median(xs)
		return c, true
	}
	var out []ProgramCost
	var pooled []tpRound
	for _, name := range tcpstate.Programs {
		program := "tp_btf/" + name
		var rs []tpRound
		for i, r := range byProgram[name] {
			if rejected != nil {
				r = tpRound{runs: r.matched, ns: r.ns - float64(r.runs-r.matched)*rejNs[program]}
			}
			rs = append(rs, r)
			if i >= len(pooled) {
				pooled = append(pooled, tpRound{})
			}
			pooled[i].runs += r.runs
			pooled[i].ns += r.ns
		}
		if c, ok := row(program, rs); ok {
			out = append(out, c)
		}
	}
	if c, ok := row("tp_btf/*", pooled); ok {
		out = append(out, c)
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
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

// TestTracepointCosts: a row is the median of its rounds (one round with an
// interrupt in it moves nothing), the webhook path prices a round's
// unmatched runs at the rejected path's figure, and the pooled row weighs
// each program by its runs.
func TestTracepointCosts(t *testing.T) {
	setState, reset := tcpstate.ProgramSetState, tcpstate.ProgramReceiveReset
	rej := tracepointCosts(map[string][]tpRound{
		setState: {{runs: 10, ns: 600}, {runs: 10, ns: 700}, {runs: 10, ns: 5000}}, // 60, 70, 500 (an interrupt)
		reset:    {{runs: 1, ns: 90}, {runs: 1, ns: 100}, {runs: 1, ns: 110}},
	}, "rejected", nil)
	want := []ProgramCost{
		{Program: "tp_btf/" + setState, Path: "rejected", NsPerEvent: 70, Events: 30},
		{Program: "tp_btf/" + reset, Path: "rejected", NsPerEvent: 100, Events: 3},
		// rounds pooled: 690/11, 800/11, 5110/11
		{Program: "tp_btf/*", Path: "rejected", NsPerEvent: 800.0 / 11, Events: 33},
	}
	if fmt.Sprint(rej) != fmt.Sprint(want) {
		t.Fatalf("rejected rows\n got %v\nwant %v", rej, want)
	}
	hook := tracepointCosts(map[string][]tpRound{
		// 4 of 10 runs matched; the other 6 cost 70 each at the rejected price
		setState: {{runs: 10, matched: 4, ns: 6*70 + 4*300}},
	}, "webhook", rej)
	want = []ProgramCost{
		{Program: "tp_btf/" + setState, Path: "webhook", NsPerEvent: 300, Events: 4},
		{Program: "tp_btf/*", Path: "webhook", NsPerEvent: 300, Events: 4},
	}
	if fmt.Sprint(hook) != fmt.Sprint(want) {
		t.Fatalf("webhook rows\n got %v\nwant %v", hook, want)
	}
}
