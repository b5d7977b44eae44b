package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/api"
	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/otel"
	"github.com/hookscope/hookscope/risk"
)

// loadKernel loads the eBPF programs. A kernel that refuses the handshake
// program (no BTF, no permission, an older kernel) leaves the agent on
// probes and the API server's signals, saying so in one line and in
// hookscope_bpf_program; it never stops it. The TCP tracepoints add
// retransmissions and who closed first. programs are those it loaded or
// could not (the TC program and each TCP tracepoint's), for the
// hookscope_bpf_program metric.
func loadKernel(asm *dataplane.Assembler, log *slog.Logger) (kernel *dataplane.Kernel, programs []otel.BPFProgram) {
	// The kernel verifies the two sets of programs at once, on two cores
	// where the node has them: most of the agent's start is verification.
	type loaded struct {
		tcp *tcpstate.Tracer
		err error
	}
	tcpDone := make(chan loaded, 1)
	go func() {
		tcp, err := tcpstate.Load()
		tcpDone <- loaded{tcp, err}
	}()
	tracer, err := handshake.Load()
	tcp := <-tcpDone
	if err != nil {
		if tcp.err == nil {
			tcp.tcp.Close()
		}
		log.Error("eBPF data plane not loaded: detecting from probes and the API server's signals only (--no-ebpf says so without this line)", "err", err)
		return nil, []otel.BPFProgram{{Tracepoint: "tc", Program: ""}}
	}
	programs = []otel.BPFProgram{{Tracepoint: "tc", Program: "handshake", Loaded: true}}
	if err := tcp.err; err != nil {
		log.Warn("TCP tracepoints not loaded: no retransmission or close events", "err", err)
		return dataplane.NewKernel(tracer, nil, asm, log), programs
	}
	var variants []string
	for _, v := range tcp.tcp.Variants() {
		variants = append(variants, v.String())
		programs = append(programs, otel.BPFProgram{Tracepoint: v.Tracepoint, Program: v.Program, Loaded: v.Loaded})
	}
	log.Info("TCP tracepoints loaded, one program per tracepoint as this kernel's BTF declares it", "programs", strings.Join(variants, "; "))
	return dataplane.NewKernel(tracer, tcp.tcp, asm, log), programs
}

// loadingKernel is the eBPF programs loading in the background; nil is no
// data plane (--no-ebpf).
type loadingKernel struct {
	done     chan struct{} // closed once loaded or refused
	kernel   *dataplane.Kernel
	programs []otel.BPFProgram
}

// startLoadingKernel loads the programs (loadKernel) in the background.
func startLoadingKernel(asm *dataplane.Assembler, log *slog.Logger) *loadingKernel {
	l := &loadingKernel{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.kernel, l.programs = loadKernel(asm, log)
	}()
	return l
}

// wait is the loaded data plane: nil if the kernel refused it, or with
// --no-ebpf.
func (l *loadingKernel) wait() *dataplane.Kernel {
	if l == nil {
		return nil
	}
	<-l.done
	return l.kernel
}

// loaded is the data plane and its programs once loading has ended, and
// nothing before.
func (l *loadingKernel) loaded() (*dataplane.Kernel, []otel.BPFProgram) {
	if l == nil {
		return nil, nil
	}
	select {
	case <-l.done:
		return l.kernel, l.programs
	default:
		return nil, nil
	}
}

// errNotLoaded: the kernel's counters are not there (yet); the metric
// skips the collection.
var errNotLoaded = errors.New("the eBPF programs are not loaded")

// fromKernel reads a counter of the loaded data plane, errNotLoaded
// before it loads or when the kernel refused it.
func fromKernel[T any](l *loadingKernel, read func(*dataplane.Kernel) (T, error)) func() (T, error) {
	return func() (T, error) {
		if k, _ := l.loaded(); k != nil {
			return read(k)
		}
		var zero T
		return zero, errNotLoaded
	}
}

// newExporter is the OTLP span exporter, nil without --otlp-endpoint.
func newExporter(ctx context.Context, o agentOptions, log *slog.Logger) (*otel.Exporter, error) {
	if o.otlpEndpoint == "" {
		log.Warn("no --otlp-endpoint: findings are not exported as spans")
		return nil, nil
	}
	exp, err := otel.NewExporter(ctx, otlpConfig(o))
	if err != nil {
		return nil, fmt.Errorf("setting up the OTLP exporter to %s: %w", o.otlpEndpoint, err)
	}
	return exp, nil
}

func otlpConfig(o agentOptions) otel.Config {
	return otel.Config{Endpoint: o.otlpEndpoint, Insecure: o.otlpInsecure, NodeName: o.nodeName, Protocol: o.otlpProtocol,
		QueueSize: o.otlpQueueSize, RetryFor: o.otlpRetryFor, XRayTraceIDs: o.xrayTraceIDs, MetricsInterval: o.otlpMetricsIntv}
}

// newMetrics builds /metrics (and OTLP metrics with an endpoint); the
// agent it reads is built after it, so it is read through a().
func newMetrics(o agentOptions, kernel *loadingKernel, exp *otel.Exporter, a func() *agent.Agent) (*otel.Metrics, error) {
	state := otel.MetricsState{
		Webhooks: func() []otel.Webhook {
			var out []otel.Webhook
			for _, w := range a().Webhooks() {
				out = append(out, otel.Webhook{Ref: w.Ref, Local: w.Local})
			}
			return out
		},
		Findings: func() (open, resolved []findings.Finding) { return a().Findings() },
		Risks: func() []otel.Risk {
			var out []otel.Risk
			for _, r := range a().Risks() {
				out = append(out, otel.Risk{Webhook: r.Webhook, Kind: string(r.Kind), Severity: string(r.Severity)})
			}
			return out
		},
		Inventory: func() otel.InventoryStats {
			st := a().InventoryStats()
			return otel.InventoryStats{Objects: map[string]int{"webhookconfiguration": st.WebhookConfigurations, "service": st.Services, "endpointslice": st.EndpointSlices,
				"apiservice": st.APIServices, "customresourcedefinition": st.CustomResourceDefinitions,
				"networkpolicy": st.NetworkPolicies, "poddisruptionbudget": st.PodDisruptionBudgets}, Watches: st.Watches}
		},
	}
	if kernel != nil {
		state.EventsDropped = fromKernel(kernel, (*dataplane.Kernel).EventsDropped)
		state.Unparsed = fromKernel(kernel, (*dataplane.Kernel).Unparsed)
		state.WireCounted = fromKernel(kernel, (*dataplane.Kernel).Counted)
		state.Programs = func() []otel.BPFProgram {
			_, programs := kernel.loaded()
			return programs
		}
	}
	if exp != nil {
		state.Spans = exp.Stats
	}
	var opts []otel.MetricsOption
	if o.otlpEndpoint != "" && o.otlpMetrics {
		opts = append(opts, otel.WithOTLPMetrics(otlpConfig(o)))
	}
	return otel.NewMetrics(state, opts...)
}

// startClusterChecks runs the object checks, the API server's signals and
// impact correlation on the agent that holds the Lease (or on this one,
// without an election), with pods, where the DaemonSet's agents run.
// The signals' caches (every Node, the Events) start once the inventory
// is synced: listing them beside it, on a large cluster, delays the
// agent's own readiness (and the API server's answers to its lists) for
// nothing the signals need first.
//
// The returned function waits, once ctx has ended, until the Lease is
// released (at most releaseWait): an agent that exits holding it leaves
// the others without the cluster-wide checks for the Lease's 15 s.
func startClusterChecks(ctx context.Context, o agentOptions, a *agent.Agent, client kube.API, pods *agentPodSet, log *slog.Logger) (released func()) {
	if !o.objectChecks {
		return func() {}
	}
	lead := func(ctx context.Context) {
		select {
		case <-ctx.Done():
			return
		case <-a.WhenSynced():
		}
		pods.watch(ctx, client, log)
		if err := a.RunClusterSignals(ctx, agent.ClusterSignals{API: client, MetricsInterval: o.metricsInterval, Log: log}); err != nil {
			log.Error("cluster signals", "err", err)
		}
	}
	if !o.leaderElect {
		go lead(ctx)
		return func() {}
	}
	id := o.nodeName
	if id == "" {
		id, _ = os.Hostname()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		agent.RunLeaderElection(ctx, client, o.leaseNS, id, a, log, lead)
	}()
	return func() {
		select {
		case <-done:
		case <-time.After(releaseWait):
			log.Warn("exiting without having released the cluster-checks Lease: another agent takes it once it expires", "waited", releaseWait)
		}
	}
}

// releaseWait bounds how long an exiting agent waits to release the
// Lease: well inside the 30 s a pod has to stop.
const releaseWait = 5 * time.Second

// serveAPI serves the agent's read-only API and /metrics.
func serveAPI(o agentOptions, a *agent.Agent, metrics *otel.Metrics) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s for the agent API: %w", o.listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", api.Handler[agent.WebhookStatus, risk.Risk](a))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}

// shutdown runs stop with 5 s to finish, logging what it could not do.
func shutdown(log *slog.Logger, what string, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn(what, "err", err)
	}
}

// agentPodSet is where the DaemonSet's agents run, read by the Lease holder
// (it probes the backends on the other nodes). Its namespace is empty when
// this process runs outside a DaemonSet ($POD_NAMESPACE unset).
type agentPodSet struct {
	namespace, selector string
	informer            atomic.Pointer[cache.SharedIndexInformer]
}

// watch starts the informer (once) on the agents' pods.
func (p *agentPodSet) watch(ctx context.Context, client kube.API, log *slog.Logger) {
	if p.namespace == "" || p.informer.Load() != nil {
		return
	}
	selector := p.selector
	i := kube.NewInformer(client, corev1.SchemeGroupVersion.WithResource("pods"), p.namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = selector }, &corev1.Pod{}, cache.Indexers{})
	p.informer.Store(&i)
	go i.RunWithContext(ctx)
	log.Info("watching the agents' pods: backends on nodes without one are probed from here", "namespace", p.namespace, "selector", selector)
}

// nodes are the nodes an agent pod runs on; ok is false until listed.
func (p *agentPodSet) nodes() (map[string]bool, bool) {
	ip := p.informer.Load()
	if ip == nil || !(*ip).HasSynced() {
		return nil, false
	}
	out := map[string]bool{}
	for _, o := range (*ip).GetStore().List() {
		if pod, ok := o.(*corev1.Pod); ok && pod.Spec.NodeName != "" && pod.DeletionTimestamp == nil {
			out[pod.Spec.NodeName] = true
		}
	}
	return out, true
}
