package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ScalePlan is what TestBenchScale grows the cluster to and how long it
// measures at each step. Steps are cumulative: the cluster only grows,
// except that webhooks beyond the base set are removed again once their
// step is measured, so each step changes one dimension of the one before
// and the cost curves can tell nodes, pods and webhooks apart. The last
// step adds the other call-outs (CRDs, conversion webhooks, APIServices)
// to the largest size and changes nothing else: their cost is its
// difference from the step before, measured in the same run.
type ScalePlan struct {
	Name  string
	Steps []ScaleStep
	// Rates are the paced call rates, each run in both modes.
	Rates      []int
	RateWindow time.Duration
	// IdleWindow is how long the agent's CPU with no calls is measured
	// before the call rates: whole probe intervals (the agent's default,
	// 10 s), so that the average neither misses nor doubles a round of
	// probes, as a window shorter than one does.
	IdleWindow time.Duration
	// Settle is the wait after an agent is ready before its figures are
	// read; Window is how long its CPU is measured.
	Settle, Window time.Duration
	// StartupRuns is how many times each agent is started at each step:
	// its startup is their median. One start moves by a few tenths of a
	// second with how fast the API server of a cluster just grown answers.
	StartupRuns int
	// DetectionRuns is how many failures are timed, idle and under load.
	DetectionRuns int
	// DetectionLoad is the call rate the healthy webhook carries while
	// failures are timed (new connection per call).
	DetectionLoad int
}

// ScaleStep is one cluster size.
type ScaleStep struct {
	Nodes, Pods, Webhooks int
	// CRDs are CustomResourceDefinitions with a realistic schema;
	// Conversions of them convert between two versions through a webhook.
	// APIServices are aggregated APIs backed by a Service. No custom
	// resource is created, so no conversion is ever called.
	CRDs, Conversions, APIServices int
}

// HasCallOuts reports whether the step holds CRDs or APIServices.
func (s ScaleStep) HasCallOuts() bool { return s.CRDs > 0 || s.APIServices > 0 }

// withCallOuts is step plus 200 CRDs (20 of them with a conversion
// webhook) and 30 APIServices.
func withCallOuts(step ScaleStep) ScaleStep {
	step.CRDs, step.Conversions, step.APIServices = 200, 20, 30
	return step
}

// LoadStep is the index of the step the call rate and detection runs are
// measured at: the largest one without the other call-outs, so that those
// figures stay comparable from run to run and no APIService's failing
// availability check runs beside them.
func (p ScalePlan) LoadStep() int {
	for i := len(p.Steps) - 1; i > 0; i-- {
		if !p.Steps[i].HasCallOuts() {
			return i
		}
	}
	return 0
}

// PodsPerService is how many bulk pods each bulk Service selects: a
// cluster's Services and EndpointSlices grow with its pods, and the agent
// caches both cluster-wide.
const PodsPerService = 10

// ScalePlanFor returns the plan for SCALE: "small" (the default, a few
// minutes on two cores) or "full" (the sizes).
func ScalePlanFor(name string) (ScalePlan, error) {
	switch name {
	case "", "small":
		return ScalePlan{
			Name: "small",
			Steps: []ScaleStep{
				{Nodes: 10, Pods: 300, Webhooks: 50},
				{Nodes: 10, Pods: 300, Webhooks: 200},
				{Nodes: 100, Pods: 300, Webhooks: 50},
				{Nodes: 100, Pods: 3000, Webhooks: 50},
				withCallOuts(ScaleStep{Nodes: 100, Pods: 3000, Webhooks: 50}),
			},
			Rates: []int{100, 1000}, RateWindow: 5 * time.Second, IdleWindow: 20 * time.Second,
			Settle: 3 * time.Second, Window: 5 * time.Second,
			StartupRuns: 3, DetectionRuns: 10, DetectionLoad: 1000,
		}, nil
	case "full":
		return ScalePlan{
			Name: "full",
			Steps: []ScaleStep{
				{Nodes: 100, Pods: 3000, Webhooks: 50},
				{Nodes: 100, Pods: 3000, Webhooks: 200},
				{Nodes: 1000, Pods: 3000, Webhooks: 50},
				{Nodes: 1000, Pods: 30000, Webhooks: 50},
				withCallOuts(ScaleStep{Nodes: 1000, Pods: 30000, Webhooks: 50}),
			},
			Rates: []int{100, 1000, 5000}, RateWindow: 10 * time.Second, IdleWindow: 30 * time.Second,
			Settle: 5 * time.Second, Window: 10 * time.Second,
			StartupRuns: 3, DetectionRuns: 20, DetectionLoad: 1000,
		}, nil
	}
	return ScalePlan{}, fmt.Errorf("SCALE=%q: want small or full", name)
}

// ProcStatus is a process's memory from /proc/PID/status, in bytes.
type ProcStatus struct {
	RSS, PeakRSS int64 // VmRSS, VmHWM
	// RSS by kind: anonymous (the Go heap and stacks), file-backed (the
	// binary's pages in use) and shared (mapped BPF maps and ring buffers).
	Anon, File, Shmem int64
}

// ReadProcStatus reads VmRSS and VmHWM of pid.
func ReadProcStatus(pid int) (ProcStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStatus{}, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (ProcStatus, error) {
	var st ProcStatus
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &st.RSS
		case "VmHWM":
			dst = &st.PeakRSS
		case "RssAnon":
			dst = &st.Anon
		case "RssFile":
			dst = &st.File
		case "RssShmem":
			dst = &st.Shmem
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return st, fmt.Errorf("parsing %s %q: want <n> kB", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("parsing %s: %w", k, err)
		}
		*dst = n << 10
	}
	if st.RSS == 0 {
		return st, errors.New("no VmRSS in /proc status")
	}
	return st, nil
}

// ReadCPUTime is the CPU pid's threads have run, user and system, from
// /proc/PID/schedstat (nanoseconds, not clock ticks).
func ReadCPUTime(pid int) (time.Duration, error) {
	// Per thread: the process's own schedstat is its main thread only.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("reading the CPU time of process %d: no tasks", pid)
	}
	// Threads that exited are only in /proc/PID/stat's totals (in clock
	// ticks): take the larger of the two.
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited between the glob and the read
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %s: %w", t, err)
		}
		sum += time.Duration(ns)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	ticks, err := statCPUTicks(b)
	if err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	if fromStat := time.Duration(ticks) * 10 * time.Millisecond; fromStat > sum {
		return fromStat, nil
	}
	return sum, nil
}

// statCPUTicks is utime+stime from a /proc/PID/stat line.
func statCPUTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("parsing /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, errors.New("parsing /proc stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parsing /proc stat: %w", err)
	}
	return u + s, nil
}

// MetricSum adds up every sample of a Prometheus text exposition whose
// name is name and whose labels include each of match (`key="value"`).
func MetricSum(text, name string, match ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		ok := true
		for _, m := range match {
			if !strings.Contains(","+labels+",", ","+m+",") {
				ok = false
			}
		}
		f := strings.Fields(rest)
		if !ok || len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// ParseHeapAlloc reads HeapAlloc from a Go heap profile in text form
// (/debug/pprof/heap?debug=1): its "# runtime.MemStats" section.
func ParseHeapAlloc(profile []byte) (int64, error) {
	for _, line := range strings.Split(string(profile), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing the heap profile's HeapAlloc: %w", err)
			}
			return n, nil
		}
	}
	return 0, errors.New("the heap profile has no HeapAlloc (not debug=1?)")
}

// MetricByLabel adds up the samples of name by the value of their label
// (e.g. hookscope_inventory_objects by kind); samples without the label
// are left out. Label values are read up to the next quote: no escapes.
func MetricByLabel(text, name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			continue
		}
		labels, value := ","+rest[:end], strings.Fields(rest[end+1:])
		_, v, ok := strings.Cut(labels, ","+label+`="`)
		if !ok || len(value) == 0 {
			continue
		}
		v, _, _ = strings.Cut(v, `"`)
		if n, err := strconv.ParseFloat(value[0], 64); err == nil {
			out[v] += n
		}
	}
	return out
}

// Percentile is the p-th percentile (0..100) of xs, nearest rank.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// FitLinear fits y = b0 + sum(b_i * x_i) by least squares over the named
// columns. A column that does not vary is left out (its slope is not in
// the result): the data cannot say how the cost grows with it.
func FitLinear(names []string, xs [][]float64, y []float64) (intercept float64, slopes map[string]float64, r2 float64, err error) {
	if len(xs) != len(y) || len(y) < 2 {
		return 0, nil, 0, fmt.Errorf("fitting: %d points for %d values", len(xs), len(y))
	}
	var cols []int
	for j := range names {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, row := range xs {
			lo, hi = math.Min(lo, row[j]), math.Max(hi, row[j])
		}
		if hi > lo {
			cols = append(cols, j)
		}
	}
	// Normal equations (A'A) b = A'y with A = [1, x_cols...], scaled per
	// column so that pods (thousands) and webhooks (tens) condition alike.
	k := len(cols) + 1
	scale := make([]float64, k)
	scale[0] = 1
	for c, j := range cols {
		for _, row := range xs {
			scale[c+1] = math.Max(scale[c+1], math.Abs(row[j]))
		}
	}
	a := func(i, c int) float64 {
		if c == 0 {
			return 1
		}
		return xs[i][cols[c-1]] / scale[c]
	}
	m := make([][]float64, k)
	for r := range m {
		m[r] = make([]float64, k+1)
		for c := 0; c < k; c++ {
			for i := range y {
				m[r][c] += a(i, r) * a(i, c)
			}
		}
		for i := range y {
			m[r][k] += a(i, r) * y[i]
		}
	}
	b, err := solve(m)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("fitting %v: %w", names, err)
	}
	slopes = map[string]float64{}
	for c, j := range cols {
		slopes[names[j]] = b[c+1] / scale[c+1]
	}
	var mean, ssTot, ssRes float64
	for _, v := range y {
		mean += v / float64(len(y))
	}
	for i, v := range y {
		pred := 0.0
		for c := 0; c < k; c++ {
			pred += b[c] * a(i, c)
		}
		ssRes += (v - pred) * (v - pred)
		ssTot += (v - mean) * (v - mean)
	}
	r2 = 1.0
	if ssTot > 0 {
		r2 = 1 - ssRes/ssTot
	}
	return b[0], slopes, r2, nil
}

// solve does Gaussian elimination with partial pivoting on an augmented
// matrix.
func solve(m [][]float64) ([]float64, error) {
	n := len(m)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		if math.Abs(m[p][c]) < 1e-12 {
			return nil, errors.New("the sizes do not separate the terms (singular system)")
		}
		m[c], m[p] = m[p], m[c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for k := c; k <= n; k++ {
				m[r][k] -= f * m[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		v := m[r][n]
		for k := r + 1; k < n; k++ {
			v -= m[r][k] * x[k]
		}
		x[r] = v / m[r][r]
	}
	return x, nil
}

// charts are the report's plots by file name: the agent's RSS by cluster
// objects (scale-rss.svg) and its CPU by call rate (call-rate-cpu.svg).
func charts(rows []ScaleSize, rates []CallRate) map[string]string {
	var rss []Series
	for _, role := range []string{"leader", "follower"} {
		s := Series{Name: role}
		for _, r := range rows {
			if r.Role == role {
				objects := float64(r.Nodes + r.Pods + r.Services + r.EndpointSlices + 3*r.Webhooks + r.CRDs + r.APIServices)
				s.Points = append(s.Points, [2]float64{objects, float64(r.AgentRSSBytes) / (1 << 20)})
			}
		}
		rss = append(rss, s)
	}
	var cpu []Series
	for _, mode := range []string{"http2", "new_connection"} {
		s, b := Series{Name: "agent, " + mode}, Series{Name: "BPF, " + mode}
		for _, r := range rates {
			if r.Mode == mode {
				s.Points = append(s.Points, [2]float64{r.AchievedCallsPerSecond, 100 * r.AgentCPUCores})
				b.Points = append(b.Points, [2]float64{r.AchievedCallsPerSecond, 100 * r.BPFCPUCores})
			}
		}
		cpu = append(cpu, s, b)
	}
	return map[string]string{
		"scale-rss.svg": SVGChart("Agent RSS by cluster size", "cluster objects (nodes + pods + Services + EndpointSlices + webhook objects + CRDs + APIServices)",
			"RSS (MiB)", rss, GoalAgentRSSBytes/(1<<20), "goal 48 MiB"),
		"call-rate-cpu.svg": SVGChart("CPU by webhook call rate", "calls/s achieved", "% of one core", cpu, 100*GoalCPUCoresNewConnection, "goal 1% at 1,000 new connections/s"),
	}
}

// Series is one line of a chart.
type Series struct {
	Name   string
	Points [][2]float64 // x, y
}

// SVGChart draws series as lines with points on linear axes, with a dashed
// goal line at goal (none if NaN). Small and dependency-free: the report
// is read on GitHub, which renders SVG next to Markdown.
func SVGChart(title, xLabel, yLabel string, series []Series, goal float64, goalLabel string) string {
	// The right margin holds the legend and the goal's label.
	const w, h, left, right, top, bottom = 760.0, 360.0, 70.0, 240.0, 40.0, 50.0
	xmax, ymax := 0.0, 0.0
	for _, s := range series {
		for _, p := range s.Points {
			xmax, ymax = math.Max(xmax, p[0]), math.Max(ymax, p[1])
		}
	}
	if !math.IsNaN(goal) {
		ymax = math.Max(ymax, goal)
	}
	xmax, ymax = niceCeil(xmax), niceCeil(ymax*1.1)
	px := func(x float64) float64 { return left + x/xmax*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/ymax*(h-top-bottom) }
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%.0f" y="20" font-size="14">%s</text>`+"\n", left, esc(title))
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n",
		left, py(0), px(xmax), py(0), left, py(0), left, py(ymax))
	for i := 0; i <= 4; i++ {
		x, y := xmax*float64(i)/4, ymax*float64(i)/4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px(x), py(0)+16, num(x))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, num(y))
	}
	// Under the plot, moved in where it is wider than the plot's half.
	half := textWidth(xLabel) / 2
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", math.Min(math.Max(px(xmax/2), half+4), w-half-4), h-12, esc(xLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.1f" transform="rotate(-90 16 %.1f)" text-anchor="middle">%s</text>`+"\n", py(ymax/2), py(ymax/2), esc(yLabel))
	if !math.IsNaN(goal) {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="gray" stroke-dasharray="6,4"/><text x="%.1f" y="%.1f" fill="gray">%s</text>`+"\n",
			left, py(goal), px(xmax), py(goal), px(xmax)+6, py(goal)+4, esc(goalLabel))
	}
	for i, s := range series {
		c := colors[i%len(colors)]
		pts := append([][2]float64(nil), s.Points...)
		sort.Slice(pts, func(a, b int) bool { return pts[a][0] < pts[b][0] })
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, px(p[0]), py(p[1]), c)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s"/>`+"\n", strings.Join(path, " "), c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", w-right+10, top+16*float64(i+1), c, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

// num is an axis label: whole numbers with thousands separators (12,500,
// not 1.25e+04), others with up to 4 significant digits.
func num(v float64) string {
	if v != math.Trunc(v) || math.Abs(v) < 1000 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	digits := strconv.FormatFloat(math.Abs(v), 'f', 0, 64)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

// textWidth is about how wide s is at the charts' 12 px sans-serif.
func textWidth(s string) float64 { return 6.6 * float64(len(s)) }

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
