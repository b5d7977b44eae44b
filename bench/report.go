// Package bench writes `make bench`'s report: the figures the issues ask
// for, measured side by side in one run, as bench-report/report.json and a
// Markdown summary. Key names are a contract: later work adds keys, never
// renames them.
package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Report is bench-report/report.json.
type Report struct {
	GeneratedAt time.Time `json:"generated_at"`
	Kernel      string    `json:"kernel,omitempty"`
	// BPF is each program's cost per run, from the kernel's bpf_stats. A
	// tracepoint's figure is the median over rounds of calls (one interrupt
	// during a run moves the mean of a few hundred runs by tens of ns), and
	// "tp_btf/*" pools all tracepoint events of a path.
	BPF []ProgramCost `json:"bpf"`
	// TracepointFloor is an empty program alone on each tracepoint, over the
	// rejected path's calls, before the tracer is loaded (path
	// "empty_program"): what any program there costs, the call, cold caches
	// and bpf_stats' own clock reads. The tracepoints' BPF figures include it.
	TracepointFloor []ProgramCost `json:"tracepoint_floor,omitempty"`
	// ThroughputRatio is bulk TLS throughput to a backend with the agent's
	// programs attached over throughput with none, in one run.
	ThroughputRatio float64     `json:"throughput_ratio"`
	Throughput      *Throughput `json:"throughput,omitempty"`
	// KernelNsPerCallNewConnection and KernelNsPerCallKeptAlive are the
	// call rate rows' kernel time per call at 1,000 calls/s.
	KernelNsPerCallNewConnection float64 `json:"kernel_ns_per_call_new_connection,omitempty"`
	KernelNsPerCallKeptAlive     float64 `json:"kernel_ns_per_call_kept_alive,omitempty"`

	// Scale is the agent's footprint at each cluster size, one
	// row per size and role: the Lease holder runs the cluster-wide checks
	// and caches every Node; every other node's agent is a follower.
	Scale []ScaleSize `json:"scale,omitempty"`
	// CallRate is the agent's cost while a backend on its node carries
	// webhook calls at a paced rate.
	CallRate []CallRate `json:"call_rate,omitempty"`
	// DetectionUnderLoad is the time from a failure's start to the agent's
	// finding while the healthy webhook carries load, next to idle.
	DetectionUnderLoad *DetectionUnderLoad `json:"detection_under_load,omitempty"`
	// ScaleRun says how the scale figures were made: the plan, how long
	// growing the cluster took, and the fitted cost curves.
	ScaleRun *ScaleRun `json:"scale_run,omitempty"`
}

// ScaleSize is one agent measured against one cluster size.
type ScaleSize struct {
	Nodes          int `json:"nodes"`
	Pods           int `json:"pods"`
	Webhooks       int `json:"webhooks"`
	Services       int `json:"services"`
	EndpointSlices int `json:"endpoint_slices"`
	// CRDs, ConversionWebhooks (CRDs that convert through a webhook) and
	// APIServices (backed by a Service) are the step's other call-outs.
	CRDs               int    `json:"crds"`
	ConversionWebhooks int    `json:"conversion_webhooks"`
	APIServices        int    `json:"apiservices"`
	Role               string `json:"role"` // "leader" or "follower"
	// AgentRSSBytes is VmRSS after the agent settled; AgentPeakRSSBytes is
	// VmHWM, the most it ever held (usually during the initial lists).
	AgentRSSBytes     int64 `json:"agent_rss_bytes"`
	AgentPeakRSSBytes int64 `json:"agent_peak_rss_bytes"`
	// The settled RSS by kind: anonymous (Go heap, stacks), file-backed
	// (the binary's pages) and shared (mapped BPF maps).
	AgentRSSAnonBytes  int64 `json:"agent_rss_anon_bytes"`
	AgentRSSFileBytes  int64 `json:"agent_rss_file_bytes"`
	AgentRSSShmemBytes int64 `json:"agent_rss_shmem_bytes"`
	// AgentLiveHeapBytes is the Go heap the agent still held right after
	// a GC the bench made it run, after the RSS window: what its caches
	// and state cost, without the GC cycle's garbage in the RSS.
	AgentLiveHeapBytes int64 `json:"agent_live_heap_bytes"`
	// AgentCPUCores is the settled agent's CPU over the measuring window.
	AgentCPUCores float64 `json:"agent_cpu_cores"`
	// StartupSeconds runs from the process's start until /readyz is ok and
	// /webhooks lists every webhook; StartupCPUSeconds is the CPU it spent.
	// Both are the medians of the starts in StartupRunsSeconds.
	StartupSeconds     float64   `json:"startup_seconds"`
	StartupCPUSeconds  float64   `json:"startup_cpu_seconds"`
	StartupRunsSeconds []float64 `json:"startup_runs_seconds,omitempty"`
	// Watches is how many WATCH requests the API server gained with the
	// agent (apiserver_longrunning_requests), ObjectsCached the objects its
	// informers hold. Services and EndpointSlices are the cluster's, cached
	// or not.
	// ObjectsCached is the sum of InventoryObjects and ListedObjects.
	Watches       int `json:"watches"`
	ObjectsCached int `json:"objects_cached"`
	LocalBackends int `json:"local_backends"`
	// InventoryObjects is the agent's own hookscope_inventory_objects by
	// kind. ListedObjects is what its informers cache that it does not
	// count, by kind, from listing the cluster: every CRD and APIService
	// (the built-in ones and those the aggregator registers for each CRD
	// version too) and, for the leader, every Node and Warning Event.
	InventoryObjects map[string]int `json:"inventory_objects_by_kind,omitempty"`
	ListedObjects    map[string]int `json:"listed_objects_by_kind,omitempty"`
	// CallOuts is what the agent's /webhooks lists, by kind.
	CallOuts map[string]int `json:"call_outs_by_kind,omitempty"`
	// InventoryUpdates is how often the agent re-resolved its inventory
	// during the CPU window: the cluster's churn it still follows.
	InventoryUpdates int `json:"inventory_updates_in_window"`
}

// CallRate is one paced run of webhook calls to a traced backend.
type CallRate struct {
	CallsPerSecond int `json:"calls_per_second"` // the target rate
	// Mode is "new_connection" (TCP and TLS handshake per call: the
	// handshake programs' worst case) or "http2" (one kept-alive HTTP/2
	// connection, as the API server calls a webhook).
	Mode                   string  `json:"mode"`
	Seconds                float64 `json:"seconds"`
	AchievedCallsPerSecond float64 `json:"achieved_calls_per_second"`
	FailedCalls            int64   `json:"failed_calls"`
	// AgentCPUCores is the agent process's CPU (user and system) over the
	// run; BPFCPUCores is its programs' run time, which the kernel charges
	// to whichever task or softirq ran them, not to the agent.
	AgentCPUCores float64 `json:"agent_cpu_cores"`
	// AgentIdleCPUCores is the same agent with no calls, just before the
	// runs; IdleInventoryUpdates its inventory re-resolutions meanwhile.
	AgentIdleCPUCores    float64 `json:"agent_idle_cpu_cores"`
	IdleInventoryUpdates int     `json:"idle_inventory_updates"`
	BPFCPUCores          float64 `json:"bpf_cpu_cores"`
	BPFNsPerEvent        float64 `json:"bpf_ns_per_event"`
	BPFEvents            int64   `json:"bpf_events"`
	// DroppedEvents is KernelDropped (ring buffer full) plus AgentDropped
	// (the agent's channel full: "agent is behind the kernel").
	DroppedEvents int64 `json:"dropped_events"`
	KernelDropped int64 `json:"kernel_dropped_events"`
	AgentDropped  int64 `json:"agent_dropped_events"`
	// CallsSeen is how many calls (handshakes) the agent counted for the
	// webhook (hookscope_webhook_calls_total).
	CallsSeen int64 `json:"calls_seen_by_agent"`
	// KernelNsPerCall is the programs' run time over the calls made: what
	// one call costs in the kernel, every program summed.
	KernelNsPerCall float64       `json:"kernel_ns_per_call"`
	Programs        []ProgramCost `json:"programs,omitempty"`
}

// DetectionUnderLoad is failure-to-finding time, loaded and idle.
type DetectionUnderLoad struct {
	P95Seconds     float64   `json:"p95_seconds"`
	P50Seconds     float64   `json:"p50_seconds"`
	IdleP95Seconds float64   `json:"idle_p95_seconds"`
	IdleP50Seconds float64   `json:"idle_p50_seconds"`
	Class          string    `json:"class"`
	Failure        string    `json:"failure"`
	Load           string    `json:"load"`
	LoadAchieved   float64   `json:"load_achieved_calls_per_second"`
	Samples        []float64 `json:"under_load_seconds"`
	IdleSamples    []float64 `json:"idle_seconds"`
	// StaleFirstCalls counts failures whose first failed call went over a
	// kept-alive connection the stopped server had closed (broken pipe,
	// EOF): no SYN, so nothing refused for the kernel to see.
	StaleFirstCalls     int `json:"stale_connection_first_calls"`
	IdleStaleFirstCalls int `json:"idle_stale_connection_first_calls"`
}

// ScaleRun is how the scale section was measured.
type ScaleRun struct {
	Scale        string        `json:"scale"` // "small" or "full"
	TotalSeconds float64       `json:"total_seconds"`
	Growth       []ScaleGrowth `json:"growth"`
	Fits         []CostFit     `json:"cost_fits"`
	// Notes name each missed goal with its figure and reason.
	Notes []string `json:"notes,omitempty"`
	// AgentBinaryBytes is the size of the agent binary measured: its
	// mapped pages are the file-backed part of the RSS.
	AgentBinaryBytes int64    `json:"agent_binary_bytes"`
	Charts           []string `json:"charts,omitempty"` // SVG files beside report.md
}

// ScaleGrowth is one step of growing the cluster through its API.
type ScaleGrowth struct {
	Nodes    int `json:"nodes"`
	Pods     int `json:"pods"`
	Services int `json:"services"`
	Webhooks int `json:"webhooks"`
	// The step's other call-outs, as in ScaleSize.
	CRDs               int `json:"crds"`
	ConversionWebhooks int `json:"conversion_webhooks"`
	APIServices        int `json:"apiservices"`
	// CreateSeconds is the time to create the step's objects (16 workers);
	// SettledSeconds adds the wait until kwok ran every pod and the
	// EndpointSlice controller wrote every Service's slice (and every CRD
	// was Established, every APIService had an Available condition and the
	// API server's WATCH count held still, for the call-out step).
	CreateSeconds  float64 `json:"create_seconds"`
	SettledSeconds float64 `json:"settled_seconds"`
	ObjectsPerSec  float64 `json:"objects_per_second"`
}

// HasCallOuts reports whether the row's cluster held the other call-outs.
func (z ScaleSize) HasCallOuts() bool { return z.CRDs > 0 || z.APIServices > 0 }

// callOutsCell is the row's CRDs / conversion webhooks / APIServices.
func callOutsCell(crds, conversions, apis int) string {
	if crds == 0 && apis == 0 {
		return "-"
	}
	return fmt.Sprintf("%d / %d / %d", crds, conversions, apis)
}

// CostFit is a least-squares line: cost = intercept + sum(slope * x).
type CostFit struct {
	Cost      string             `json:"cost"` // e.g. "agent_rss_bytes"
	Role      string             `json:"role,omitempty"`
	Mode      string             `json:"mode,omitempty"`
	Intercept float64            `json:"intercept"`
	Slopes    map[string]float64 `json:"slopes"` // per one node, pod, webhook, call/s
	R2        float64            `json:"r2"`
	Points    int                `json:"points"`
	Note      string             `json:"note,omitempty"`
}

// ProgramCost is one program's cost on one path.
type ProgramCost struct {
	Program string `json:"program"`
	// Path is "webhook" (traffic of a traced backend) or "rejected"
	// (everything else, turned away at the first map lookup).
	Path       string  `json:"path"`
	NsPerEvent float64 `json:"ns_per_event"`
	Events     int64   `json:"events"`
}

// Throughput is the bulk transfer behind ThroughputRatio.
type Throughput struct {
	Bytes             int64   `json:"bytes_per_run"`
	Runs              int     `json:"runs"`
	AttachedMBps      float64 `json:"attached_mb_per_second"`
	DetachedMBps      float64 `json:"detached_mb_per_second"`
	AttachedPrograms  string  `json:"attached_programs"`
	TransferDirection string  `json:"transfer"`
	// Programs is what each attached program costs in the same transfer,
	// measured in attached runs of their own with bpf_stats on (the ratio's
	// runs have it off, as the agent does): packets seen per run, ns per
	// packet, and its run time as a share of those runs' wall time.
	Programs []BulkCost `json:"programs,omitempty"`
	// RatioCI95 is a 95% confidence interval of the ratio, bootstrapped
	// over the alternated pairs of runs: single runs here vary by about
	// 10%, so the ratio is only as sure as this.
	RatioCI95 [2]float64 `json:"ratio_ci95"`
}

// BulkCost is one program's cost over the attached bulk runs.
type BulkCost struct {
	Program    string  `json:"program"`
	Packets    int64   `json:"packets_per_run"`
	NsPerEvent float64 `json:"ns_per_packet"`
	// WallShare is the program's run time over the attached runs' wall
	// time: the share of one core it took from the transfer.
	WallShare float64 `json:"wall_share"`
}

// Goals are the targets the summary compares against.
const (
	// A tracepoint's rejected path (the events of other connections), net
	// of an empty program's floor on the same tracepoint.
	GoalNsOverFloorRejected = 15.0
	// The TC program per packet of a traced flow once there is nothing to
	// learn from it: "a few tens of ns", priced over a bulk transfer.
	GoalNsPerBulkPacket = 50.0
	GoalThroughputRatio = 0.99

	GoalAgentRSSBytes     = 48 << 20 // at every cluster size
	GoalStartupSeconds    = 1.0      // at the largest size
	GoalDetectionP95      = 1.0      // seconds, under load
	GoalDroppedEventsAt5k = 0        // at 5,000 calls/s
	goalCPURate           = 1000
	goalNoDropsRate       = 5000

	// The agent's CPU at 1,000 calls/s, by mode, and with no calls.
	GoalCPUCoresNewConnection = 0.01
	GoalCPUCoresKeptAlive     = 0.005
	GoalIdleCPUCores          = 0.001
	// Kernel time per traced call, every program summed (bpf_stats).
	GoalKernelNsNewConnection = 4000.0
	GoalKernelNsKeptAlive     = 1000.0
)

// goalCPU is the agent's CPU goal at goalCPURate in mode.
func goalCPU(mode string) float64 {
	if mode == "new_connection" {
		return GoalCPUCoresNewConnection
	}
	return GoalCPUCoresKeptAlive
}

// goalKernelNs is the kernel time goal per call in mode.
func goalKernelNs(mode string) float64 {
	if mode == "new_connection" {
		return GoalKernelNsNewConnection
	}
	return GoalKernelNsKeptAlive
}

// Update reads dir/report.json if it is there, applies fn to it and writes
// report.json and report.md back: each test of `make bench` adds its own
// sections to the one report, whichever runs first. A report.json that
// cannot be read is an error, never silently replaced.
func Update(dir string, fn func(*Report)) error {
	r := &Report{}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("updating the bench report: reading %s: %w", filepath.Join(dir, "report.json"), err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("updating the bench report: %w", err)
	}
	fn(r)
	r.GeneratedAt = time.Now()
	return r.Write(dir)
}

// Write writes report.json and report.md into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return fmt.Errorf("writing the bench report: %w", err)
	}
	return nil
}

// Markdown is the human summary, with each figure next to its goal.
func (r *Report) Markdown() string {
	var s strings.Builder
	fmt.Fprintf(&s, "# hookscope bench, %s\n\n", r.GeneratedAt.UTC().Format(time.RFC3339))
	if r.Kernel != "" {
		fmt.Fprintf(&s, "Kernel %s. All figures from one run, side by side.\n\n", r.Kernel)
	}
	r.bpfMarkdown(&s)
	r.throughputMarkdown(&s)
	r.scaleMarkdown(&s)
	return s.String()
}

// bpfMarkdown writes the eBPF programs table: each program's cost per event,
// net of the empty program's floor where one was measured.
func (r *Report) bpfMarkdown(s *strings.Builder) {
	s.WriteString("## eBPF programs (bpf_stats)\n\n")
	floor := map[string]float64{}
	if len(r.TracepointFloor) > 0 {
		s.WriteString("Floor: an empty program alone on the same tracepoint, over the rejected path's calls, " +
			"before the tracer was loaded; the figures include it.\n\n")
		for _, f := range r.TracepointFloor {
			floor[f.Program] = f.NsPerEvent
		}
	}
	s.WriteString("| program | path | ns per event | events | floor | net of the floor | goal |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, c := range r.BPF {
		// The webhook path's goals are per call (the call rate section).
		goal, fl, net := "-", "-", "-"
		if f, ok := floor[c.Program]; ok {
			fl, net = fmt.Sprintf("%.1f", f), fmt.Sprintf("%.1f", c.NsPerEvent-f)
			if c.Path == "rejected" {
				over := c.NsPerEvent - f
				goal = fmt.Sprintf("<= %.0f ns over the floor: %s (%.2f)", GoalNsOverFloorRejected,
					verdict(over <= GoalNsOverFloorRejected), over/GoalNsOverFloorRejected)
			}
		}
		fmt.Fprintf(s, "| %s | %s | %.1f | %d | %s | %s | %s |\n", c.Program, c.Path, c.NsPerEvent, c.Events, fl, net, goal)
	}
}

// throughputMarkdown writes the throughput section, if measured: the ratio
// with its confidence interval against the goal, then what each attached
// program cost in the same transfer.
func (r *Report) throughputMarkdown(s *strings.Builder) {
	t := r.Throughput
	if t == nil {
		return
	}
	fmt.Fprintf(s, "\n## Throughput\n\n%s, %d runs of %d MiB each way, alternated.\n\n", t.TransferDirection, t.Runs, t.Bytes>>20)
	fmt.Fprintf(s, "| attached (%s) | detached | ratio | 95%% CI | goal |\n|---:|---:|---:|---|---|\n", t.AttachedPrograms)
	v := verdict(r.ThroughputRatio >= GoalThroughputRatio)
	if r.ThroughputRatio >= GoalThroughputRatio && t.RatioCI95[0] < GoalThroughputRatio {
		v += " by the estimate; its 95% CI reaches below"
	}
	fmt.Fprintf(s, "| %.1f MB/s | %.1f MB/s | %.4f | %.4f-%.4f | >= %.2f: %s |\n", t.AttachedMBps, t.DetachedMBps, r.ThroughputRatio,
		t.RatioCI95[0], t.RatioCI95[1], GoalThroughputRatio, v)
	if len(t.Programs) > 0 {
		fmt.Fprintf(s, "\nWhat the programs cost in the same transfer (attached runs of their own, bpf_stats on), where "+
			"after the handshake and the first answer there is nothing to learn:\n\n"+
			"| program | packets per run | ns per packet | share of the wall time | goal |\n|---|---:|---:|---:|---|\n")
		for _, p := range t.Programs {
			fmt.Fprintf(s, "| %s | %d | %.1f | %.2f%% | <= %.0f ns: %s (%.2f) |\n", p.Program, p.Packets, p.NsPerEvent, 100*p.WallShare,
				GoalNsPerBulkPacket, verdict(p.NsPerEvent <= GoalNsPerBulkPacket), p.NsPerEvent/GoalNsPerBulkPacket)
		}
	}
}

// scaleMarkdown writes the scale, call rate, detection and cost curve
// sections, each figure with its ratio to the goal.
func (r *Report) scaleMarkdown(s *strings.Builder) {
	r.clusterScaleMarkdown(s)
	r.callRateMarkdown(s)
	r.detectionMarkdown(s)
	run := r.ScaleRun
	if run == nil {
		return
	}
	run.costCurvesMarkdown(s)
	run.goalNotesMarkdown(s)
	fmt.Fprintf(s, "\nScale run: %.0f s in all.\n", run.TotalSeconds)
}

// clusterScaleMarkdown writes the cluster scale table, one row per size and
// role, followed by the growth table. The startup goal applies only to the
// largest size, so only its row carries a verdict.
func (r *Report) clusterScaleMarkdown(s *strings.Builder) {
	if len(r.Scale) == 0 {
		return
	}
	run := r.ScaleRun
	maxNodes, maxPods := 0, 0
	for _, z := range r.Scale {
		maxNodes, maxPods = max(maxNodes, z.Nodes), max(maxPods, z.Pods)
	}
	fmt.Fprintf(s, "\n## Cluster scale")
	if run != nil {
		fmt.Fprintf(s, " (SCALE=%s)", run.Scale)
	}
	s.WriteString("\n\nOne agent per row against a real API server with kwok nodes and pods; eBPF on. " +
		"RSS and CPU after it settled; live heap is the Go heap right after a GC the bench made it run, after the RSS window; " +
		"startup is process start to /readyz ok and every call-out in /webhooks, the median of the agent's starts at that step (each in report.json). " +
		"Call-outs are CRDs / of them with a conversion webhook / APIServices; the step that adds them changes nothing else, " +
		"so its difference from the row before is their cost. Ratio is measured / goal (<= 1 meets it).\n\n")
	s.WriteString("| nodes | pods | services | webhooks | call-outs | role | RSS | anon / file / shared | peak RSS | live heap | CPU (cores) | startup | watches | objects cached | RSS / 48 MiB | startup / 1 s |\n")
	s.WriteString("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, z := range r.Scale {
		startup := fmt.Sprintf("%.2f", z.StartupSeconds/GoalStartupSeconds)
		if z.Nodes == maxNodes && z.Pods == maxPods {
			startup += " " + verdict(z.StartupSeconds < GoalStartupSeconds)
		}
		fmt.Fprintf(s, "| %d | %d | %d | %d | %s | %s | %s | %.1f / %.1f / %.1f | %s | %s | %.4f | %.2f s | %d | %d | %.2f %s | %s |\n",
			z.Nodes, z.Pods, z.Services, z.Webhooks, callOutsCell(z.CRDs, z.ConversionWebhooks, z.APIServices), z.Role, mib(z.AgentRSSBytes),
			float64(z.AgentRSSAnonBytes)/(1<<20), float64(z.AgentRSSFileBytes)/(1<<20), float64(z.AgentRSSShmemBytes)/(1<<20),
			mib(z.AgentPeakRSSBytes), mib(z.AgentLiveHeapBytes), z.AgentCPUCores,
			z.StartupSeconds, z.Watches, z.ObjectsCached, float64(z.AgentRSSBytes)/GoalAgentRSSBytes,
			verdict(z.AgentRSSBytes < GoalAgentRSSBytes), startup)
	}
	if run != nil {
		run.growthMarkdown(s)
	}
}

// growthMarkdown writes how long each step of growing the cluster took.
func (run *ScaleRun) growthMarkdown(s *strings.Builder) {
	if len(run.Growth) == 0 {
		return
	}
	s.WriteString("\nGrowing the cluster through its API (objects are nodes, pods, Services, webhook and call-out objects of the step):\n\n")
	s.WriteString("| nodes | pods | pod Services | webhooks | call-outs | create | settled | objects/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, g := range run.Growth {
		fmt.Fprintf(s, "| %d | %d | %d | %d | %s | %.1f s | %.1f s | %.0f |\n", g.Nodes, g.Pods, g.Services, g.Webhooks,
			callOutsCell(g.CRDs, g.ConversionWebhooks, g.APIServices), g.CreateSeconds, g.SettledSeconds, g.ObjectsPerSec)
	}
}

// callRateMarkdown writes the call rate table; the CPU goal applies at
// goalCPURate and the no-drops goal at goalNoDropsRate.
func (r *Report) callRateMarkdown(s *strings.Builder) {
	if len(r.CallRate) == 0 {
		return
	}
	s.WriteString("\n## Call rate\n\nPaced TLS webhook calls (AdmissionReview POSTs) from the host to a traced backend in a network namespace on the agent's node. " +
		"Agent CPU is the process's own; BPF CPU is its programs' run time (bpf_stats), which the kernel charges to the senders.\n\n")
	s.WriteString("| mode | target calls/s | achieved | agent CPU (cores) | of it idle | BPF CPU (cores) | kernel ns/call | BPF ns/event | BPF events | dropped (kernel + agent) | calls seen by agent | goal |\n")
	s.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, c := range r.CallRate {
		goal := "-"
		switch c.CallsPerSecond {
		case goalCPURate:
			gc, gk := goalCPU(c.Mode), goalKernelNs(c.Mode)
			goal = fmt.Sprintf("CPU %.2f of %.1f%% core %s; kernel %.2f of %.0f ns %s; idle %.2f of %.1f%% core %s",
				c.AgentCPUCores/gc, 100*gc, verdict(c.AgentCPUCores <= gc), c.KernelNsPerCall/gk, gk, verdict(c.KernelNsPerCall <= gk),
				c.AgentIdleCPUCores/GoalIdleCPUCores, 100*GoalIdleCPUCores, verdict(c.AgentIdleCPUCores <= GoalIdleCPUCores))
		case goalNoDropsRate:
			goal = "no drops " + verdict(c.DroppedEvents <= GoalDroppedEventsAt5k)
		}
		fmt.Fprintf(s, "| %s | %d | %.0f | %.4f | %.4f | %.4f | %.0f | %.1f | %d | %d (%d + %d) | %d | %s |\n", c.Mode, c.CallsPerSecond, c.AchievedCallsPerSecond,
			c.AgentCPUCores, c.AgentIdleCPUCores, c.BPFCPUCores, c.KernelNsPerCall, c.BPFNsPerEvent, c.BPFEvents, c.DroppedEvents, c.KernelDropped, c.AgentDropped, c.CallsSeen, goal)
	}
}

// detectionMarkdown writes failure-to-finding time idle and under load, if
// measured.
func (r *Report) detectionMarkdown(s *strings.Builder) {
	d := r.DetectionUnderLoad
	if d == nil {
		return
	}
	fmt.Fprintf(s, "\n## Detection under load\n\n%s, %s from its first failed call to the agent's finding (/findings polled every 20 ms). Load: %s (achieved %.0f calls/s).\n\n",
		d.Failure, d.Class, d.Load, d.LoadAchieved)
	s.WriteString("| | samples | first call on a stale connection | p50 | p95 | max | goal p95 < 1 s |\n|---|---:|---:|---:|---:|---:|---|\n")
	fmt.Fprintf(s, "| idle | %d | %d | %.3f s | %.3f s | %.3f s | %.2f %s |\n", len(d.IdleSamples), d.IdleStaleFirstCalls, d.IdleP50Seconds, d.IdleP95Seconds,
		Percentile(d.IdleSamples, 100), d.IdleP95Seconds/GoalDetectionP95, verdict(d.IdleP95Seconds < GoalDetectionP95))
	fmt.Fprintf(s, "| under load | %d | %d | %.3f s | %.3f s | %.3f s | %.2f %s |\n", len(d.Samples), d.StaleFirstCalls, d.P50Seconds, d.P95Seconds,
		Percentile(d.Samples, 100), d.P95Seconds/GoalDetectionP95, verdict(d.P95Seconds < GoalDetectionP95))
}

// costCurvesMarkdown writes the fitted cost lines and links their charts.
func (run *ScaleRun) costCurvesMarkdown(s *strings.Builder) {
	if len(run.Fits) == 0 {
		return
	}
	s.WriteString("\n## Cost curves\n\nLeast-squares lines over the rows above: cost = intercept + slope x size. " +
		"Pods come with their Services and EndpointSlices (one each per 10 pods), so the pod slope includes them. " +
		"The call-out step is left out of the fits (it repeats the size before with one more dimension); the scale goals say its difference.\n\n")
	s.WriteString("| cost | of | intercept | slopes | R² | points | note |\n|---|---|---:|---|---:|---:|---|\n")
	for _, f := range run.Fits {
		of := f.Role + f.Mode
		var parts []string
		for _, k := range sortedKeys(f.Slopes) {
			parts = append(parts, fmt.Sprintf("%s per %s", fitUnit(f.Cost, f.Slopes[k]), k))
		}
		fmt.Fprintf(s, "| %s | %s | %s | %s | %.3f | %d | %s |\n", f.Cost, of, fitUnit(f.Cost, f.Intercept), strings.Join(parts, ", "), f.R2, f.Points, f.Note)
	}
	for _, c := range run.Charts {
		fmt.Fprintf(s, "\n![%s](%s)\n", strings.TrimSuffix(c, ".svg"), c)
	}
}

// goalNotesMarkdown lists the scale goals missed, each with its figure and
// reason.
func (run *ScaleRun) goalNotesMarkdown(s *strings.Builder) {
	if len(run.Notes) == 0 {
		return
	}
	s.WriteString("\n## Scale goals\n\n")
	for _, n := range run.Notes {
		fmt.Fprintf(s, "- %s\n", n)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// fitUnit formats a fitted coefficient in the cost's unit.
func fitUnit(cost string, v float64) string {
	switch {
	case strings.HasSuffix(cost, "_bytes"):
		if v != 0 && v < 1<<20 && v > -(1<<20) {
			return fmt.Sprintf("%.1f KiB", v/1024)
		}
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case strings.HasSuffix(cost, "_cores"):
		return fmt.Sprintf("%.6f cores", v)
	case strings.HasSuffix(cost, "_seconds"):
		return fmt.Sprintf("%.4f s", v)
	}
	return fmt.Sprintf("%.4g", v)
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
