package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/inventory"
	"github.com/hookscope/hookscope/otel"
	"github.com/hookscope/hookscope/probe"
)

type agentOptions struct {
	kubeconfig      string
	nodeName        string
	otlpEndpoint    string
	otlpInsecure    bool
	otlpProtocol    string
	otlpMetrics     bool
	otlpMetricsIntv time.Duration
	otlpQueueSize   int
	otlpRetryFor    time.Duration
	xrayTraceIDs    bool
	listen          string
	peerListen      string
	peerFindings    bool
	pprof           bool
	probeInterval   time.Duration
	probeTimeout    time.Duration
	noEBPF          bool
	logLevel        string
	objectChecks    bool
	leaderElect     bool
	leaseNS         string
	certHorizon     time.Duration
	metricsInterval time.Duration
	slowThreshold   time.Duration
	reviewProbe     bool
	stateFile       string
	agentSelector   string
	recordEvents    bool
	guard           guardOptions
}

// Command is `hookscope agent`, what the DaemonSet runs on each node.
func Command() *cobra.Command {
	o := agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: trace webhook backends on this node, probe them, report findings",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			gcHeadroom()
			return runAgent(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: $KUBECONFIG, else the pod's ServiceAccount)")
	f.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "trace and probe only backends on this node (default: $NODE_NAME; empty: all)")
	f.StringVar(&o.otlpEndpoint, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP gRPC collector host:port for finding spans (empty: no spans)")
	f.BoolVar(&o.otlpInsecure, "otlp-insecure", true, "talk to the collector without TLS")
	f.StringVar(&o.otlpProtocol, "otlp-protocol", "grpc", "grpc (collector port 4317) or http (4318)")
	f.BoolVar(&o.otlpMetrics, "otlp-metrics", true, "also push the /metrics instruments to --otlp-endpoint (when it is set)")
	f.DurationVar(&o.otlpMetricsIntv, "otlp-metrics-interval", otel.DefaultMetricsInterval, "how often OTLP metrics are pushed")
	f.IntVar(&o.otlpQueueSize, "otlp-queue-size", otel.DefaultQueueSize, "spans kept for the collector while it is down; more are dropped and counted (hookscope_exporter_spans_total)")
	f.DurationVar(&o.otlpRetryFor, "otlp-retry-for", otel.DefaultRetryFor, "how long a batch of spans is retried while the collector is down before it is dropped and counted")
	f.BoolVar(&o.xrayTraceIDs, "xray-trace-ids", false, "trace IDs that start with the time, as AWS X-Ray requires (for a collector with the awsxray exporter)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9477", "address of the read-only HTTP API (/findings, /webhooks, /metrics, /healthz, /readyz)")
	f.StringVar(&o.peerListen, "peer-listen", "", "address where the other agents read what this node's kernel saw of the API server's connections (GET /ledger), e.g. $(POD_IP):9478; empty: the Lease holder judges only its own node's backends")
	f.BoolVar(&o.peerFindings, "peer-findings", false, "also serve this agent's findings (GET /findings, read-only) on the peer port, where `hookscope findings` reads them through the API server's pod proxy")
	f.BoolVar(&o.pprof, "pprof", false, "also serve Go's profiles under /debug/pprof/ on the API address (to see where the agent's CPU and memory go; keep the address private)")
	f.DurationVar(&o.probeInterval, "probe-interval", 10*time.Second, "probe every local backend this often, even when no call fails")
	f.DurationVar(&o.probeTimeout, "probe-timeout", 3*time.Second, "bound on one probe")
	f.BoolVar(&o.noEBPF, "no-ebpf", false, "run without the eBPF data plane (probes and the API only)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&o.objectChecks, "object-checks", true, "check webhook objects (Service, endpoints, backend pods) cluster-wide: the failures that send no packet")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "run the object checks only on the agent that holds the cluster's Lease")
	f.StringVar(&o.leaseNS, "lease-namespace", envOr("POD_NAMESPACE", "hookscope"), "namespace of the leader-election Lease (default: $POD_NAMESPACE)")
	f.DurationVar(&o.metricsInterval, "apiserver-metrics-interval", 15*time.Second, "how often the leader reads the API server's webhook metrics")
	f.DurationVar(&o.certHorizon, "cert-horizon", 7*24*time.Hour, "report a served certificate that expires within this horizon")
	f.DurationVar(&o.slowThreshold, "slow-threshold", time.Second, "a webhook whose calls take this long on average (or half its timeoutSeconds, if less) is SlowResponse")
	f.StringVar(&o.agentSelector, "agent-selector", "app.kubernetes.io/name=hookscope-agent", "labels of the agents' pods in $POD_NAMESPACE: the backends on nodes without one are probed by the agent holding the Lease")
	f.StringVar(&o.stateFile, "state-file", "", "file that keeps the open findings, so a restarted agent goes on with them and their IDs (empty: none)")
	f.BoolVar(&o.reviewProbe, "review-probe", false, "probes also send every admission webhook whose sideEffects is None or NoneOnDryRun one dryRun AdmissionReview and judge the answer as the API server would (the webhook sees it; off: only webhooks whose configuration is annotated hookscope.dev/review-probe=true)")
	f.BoolVar(&o.recordEvents, "record-events", true, "record a Kubernetes Event on the webhook configuration (the CRD of a conversion webhook, the APIService) when a finding opens (Warning WebhookFailing) and when it ends (Normal WebhookRecovered); the agent's only write besides its Lease, needs create and patch on events")
	o.guard.flags(f)
	return cmd
}

func runAgent(ctx context.Context, o agentOptions) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := kube.New(cfg)
	if err != nil {
		return fmt.Errorf("building the Kubernetes client from %s: %w", describeConfig(o.kubeconfig), err)
	}
	store := restoreStore(o, log)
	defer store.Save()
	own := probe.NewOwn()

	// The programs load while the agent lists what it watches: most of
	// its start is the kernel verifying them. A node that cannot load
	// them says so even when the API server is also down.
	asm := dataplane.NewAssembler(dataplane.Config{IsOwn: own.Is, SlowThreshold: o.slowThreshold, Log: log})
	var kernel *loadingKernel
	if !o.noEBPF {
		kernel = startLoadingKernel(asm, log)
	}
	if err := checkAPIServer(ctx, client, cfg.Host); err != nil {
		kernel.wait()
		return err
	}
	if o.noEBPF {
		log.Warn("no eBPF data plane (--no-ebpf): detecting from probes and the API server's signals only")
	}
	exp, err := newExporter(ctx, o, log)
	if err != nil {
		return err
	}
	if exp != nil {
		defer shutdown(log, "flushing spans", exp.Shutdown)
	}

	var a *agent.Agent
	metrics, err := newMetrics(o, kernel, exp, func() *agent.Agent { return a })
	if err != nil {
		return err
	}
	defer shutdown(log, "pushing the last OTLP metrics", metrics.Shutdown)
	store.AddSink(metrics)
	if exp != nil {
		store.AddSink(exp)
	}
	parts := agent.Parts{Inventory: newInventory(client, log), Store: store, Own: own, Assembler: asm,
		Guard: newGuard(ctx, o.guard, client.As("hookscope-guard"), metrics, exp, log), DataPlaneLater: kernel != nil}
	recordEvents(ctx, o, client, parts.Inventory, store, log)
	acfg, agentPods := agentConfig(ctx, o, client, metrics, log)
	a = agent.New(acfg, parts)
	asm.SetOutput(a.WireOutput(callOutput(metrics, exp)))
	if kernel != nil {
		go attachKernel(ctx, kernel, own, a)
	}
	released := startClusterChecks(ctx, o, a, client, agentPods, log)
	defer released()

	addr, stopServing, err := serve(o, a, metrics, log)
	if err != nil {
		return err
	}
	defer stopServing()
	log.Info("hookscope agent started", "api", "http://"+addr, "node", o.nodeName, "apiserver", cfg.Host, "ebpf", !o.noEBPF)
	go returnStartupMemory(ctx, a.WhenSynced())
	return a.Run(ctx)
}

// attachKernel gives the agent the data plane once its programs have
// loaded (none, if they could not) and runs it until ctx ends.
func attachKernel(ctx context.Context, kernel *loadingKernel, own *probe.Own, a *agent.Agent) {
	k := kernel.wait()
	if k == nil {
		a.AttachDataPlane(nil)
		return
	}
	own.MarkInKernel(k) // the probes' SYNs apart from the API server's
	go k.Run(ctx)
	a.AttachDataPlane(k)
}

// returnStartupMemory gives the OS back, once the agent is synced, the
// memory its first lists took (decoded, then dropped). Left to the Go
// runtime, it goes back a page run at a time over minutes, each a wake-up
// of the agent; its RSS meanwhile depends on how far that got.
func returnStartupMemory(ctx context.Context, synced <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-synced:
		debug.FreeOSMemory()
	}
}

// agentConfig is the agent's configuration from o, and the agents' pods
// (the other nodes' agents, when it runs as a pod of the DaemonSet).
func agentConfig(ctx context.Context, o agentOptions, client kube.API, metrics agent.ProbeObserver, log *slog.Logger) (agent.Config, *agentPodSet) {
	acfg := agent.Config{
		NodeName: o.nodeName, ProbeInterval: o.probeInterval, ProbeTimeout: o.probeTimeout, Logger: log,
		Observer:     metrics,
		CertHorizon:  o.certHorizon,
		ReviewProbe:  o.reviewProbe,
		ObjectChecks: o.objectChecks && !o.leaderElect, // with an election, the leader turns them on
		Pods:         inventory.APIPodLister{Client: client},
		APIServer:    watchAPIServerAddrs(ctx, client, log).has,
	}
	agentPods := &agentPodSet{namespace: os.Getenv("POD_NAMESPACE"), selector: o.agentSelector}
	if agentPods.namespace != "" {
		acfg.AgentNodes = agentPods.nodes
		if port, ok := PeerPort(o.peerListen); ok {
			acfg.PeerLedger = agentPods.peerLedger(port)
		}
	}
	return acfg, agentPods
}

// agentGCPercent is the agent's Go heap headroom over what it holds, in
// percent (Go's default is 100). The agent holds little and allocates in
// bursts (listing large objects): with half the headroom its anonymous
// memory with 200 webhook configurations was 19-21 MiB instead of 27 MiB,
// for the same CPU idle (measured side by side on one API server); under
// load it collects twice as often (make bench, one run each: 5.9% instead of
// 4.3% of a core at 1,000 new TLS connections/s). GOGC=100 in the
// environment (the chart's agent.extraEnv) takes the other side.
const agentGCPercent = 50

// gcHeadroom sets agentGCPercent, unless GOGC in the environment decides.
func gcHeadroom() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
}

// restoreStore is the findings store, with what the last run left open.
func restoreStore(o agentOptions, log *slog.Logger) *findings.Store {
	store := findings.NewStore(findings.Config{Log: log, StatePath: o.stateFile})
	if n, err := store.Restore(); err != nil {
		log.Warn("open findings of the last run not restored", "err", err)
	} else if n > 0 {
		log.Info("open findings of the last run restored: each goes on if seen again, or resolves", "findings", n, "state", o.stateFile)
	}
	return store
}

// callOutput sends the data plane's calls and events to the metrics and,
// with a collector, one span per handshake.
func callOutput(metrics *otel.Metrics, exp *otel.Exporter) dataplane.Output {
	return dataplane.Output{Event: metrics.ObserveWire, Response: metrics.ObserveResponse, Call: func(c callout.Call) {
		metrics.ReportCall(c)
		if exp != nil {
			exp.ReportCall(c)
		}
	}}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// restConfig loads the kubeconfig, or the in-cluster config when none is named.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, errors.New("no kubeconfig: pass --kubeconfig or set KUBECONFIG, or run in a pod with a ServiceAccount")
		}
		return cfg, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

func describeConfig(path string) string {
	if path == "" {
		return "the in-cluster config"
	}
	return path
}

// checkAPIServer fails fast, in one line, when the API server cannot be reached.
func checkAPIServer(ctx context.Context, client kube.API, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := client.Raw(ctx, "/version", "application/json")
	if err == nil {
		body.Close()
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cannot reach the API server at %s: no answer within 10s (check the kubeconfig and that the API server is up)", host)
	}
	return fmt.Errorf("cannot reach the API server at %s: %v (check the kubeconfig and that the API server is up)", host, err)
}

// PeerPort is the port of a --peer-listen address: every agent serves its
// ledger there.
func PeerPort(addr string) (int, bool) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(p)
	return port, err == nil && port > 0
}

// serve serves the agent's API and, with --peer-listen, its peer port.
func serve(o agentOptions, a *agent.Agent, metrics *otel.Metrics, log *slog.Logger) (addr string, stop func(), err error) {
	srv, addr, err := serveAPI(o, a, metrics)
	if err != nil {
		return "", nil, err
	}
	if o.peerListen == "" {
		return addr, func() { srv.Close() }, nil
	}
	peer, paddr, err := servePeer(o.peerListen, a, o.peerFindings)
	if err != nil {
		srv.Close()
		return "", nil, err
	}
	log.Info("serving the SYN ledger to the other agents", "addr", paddr, "findings", o.peerFindings)
	return addr, func() { srv.Close(); peer.Close() }, nil
}

// newInventory watches every call-out: the webhooks, the aggregated APIs
// and the CRDs' conversion webhooks.
func newInventory(client kube.API, log *slog.Logger) *inventory.Inventory {
	inv := inventory.New(client, log)
	inv.WatchAPIServices(client)
	inv.WatchConversions(client)
	inv.ReadCertificates(client)
	return inv
}
