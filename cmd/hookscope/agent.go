package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
	"github.com/hookscope/hookscope/otel"
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
}

func agentCommand() *cobra.Command {
	o := agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: trace webhook backends on this node, probe them, report findings",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
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
	f.BoolVar(&o.reviewProbe, "review-probe", false, "probes also send one dryRun AdmissionReview and time the answer (the webhook sees it; off: probes send nothing)")
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
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building the Kubernetes client from %s: %w", describeConfig(o.kubeconfig), err)
	}

	// The kernel first: a node that cannot load the programs should say so
	// even when the API server is also down.
	var (
		dp       agent.DataPlane
		dropped  func() (uint64, error)
		unparsed func() (map[string]uint64, error)
	)
	if !o.noEBPF {
		tracer, err := handshake.Load()
		if err != nil {
			return fmt.Errorf("%w; or run with --no-ebpf to detect from probes and the API only", err)
		}
		kdp := agent.NewKernelDataPlane(tracer, log)
		if tcp, err := tcpstate.Load(); err != nil {
			// The handshake programs cover refusals, resets and TLS; the
			// tracepoints add retransmissions and who closed first.
			log.Warn("TCP tracepoints not loaded: no retransmission or close events", "err", err)
		} else {
			kdp.WithTCP(tcp)
		}
		go kdp.Run(ctx)
		dp, dropped, unparsed = kdp, kdp.EventsDropped, kdp.Unparsed
	}
	if err := checkAPIServer(ctx, client, cfg.Host); err != nil {
		return err
	}

	var sinks []agent.FindingSink
	var spanStats func() otel.SpanStats
	var metricsOpts []otel.MetricsOption
	if o.otlpEndpoint != "" {
		otlpCfg := otel.Config{Endpoint: o.otlpEndpoint, Insecure: o.otlpInsecure, NodeName: o.nodeName, Protocol: o.otlpProtocol,
			QueueSize: o.otlpQueueSize, RetryFor: o.otlpRetryFor, XRayTraceIDs: o.xrayTraceIDs, MetricsInterval: o.otlpMetricsIntv}
		if o.otlpMetrics {
			metricsOpts = append(metricsOpts, otel.WithOTLPMetrics(otlpCfg))
		}
		exp, err := otel.NewExporter(ctx, otlpCfg)
		if err != nil {
			return fmt.Errorf("setting up the OTLP exporter to %s: %w", o.otlpEndpoint, err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := exp.Shutdown(sctx); err != nil {
				log.Warn("flushing spans", "err", err)
			}
		}()
		sinks = append(sinks, exp)
		spanStats = exp.Stats
	} else {
		log.Warn("no --otlp-endpoint: findings are not exported as spans")
	}

	var a *agent.Agent
	metrics, err := otel.NewMetrics(otel.MetricsState{
		Webhooks:      func() []agent.WebhookStatus { return a.Webhooks() },
		Findings:      func() ([]agent.Finding, []agent.Finding) { return a.Findings() },
		EventsDropped: dropped,
		Unparsed:      unparsed,
		Risks:         func() []agent.Risk { return a.Risks() },
		Spans:         spanStats,
		Inventory:     func() agent.InventoryStats { return a.InventoryStats() },
	}, metricsOpts...)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := metrics.Shutdown(sctx); err != nil {
			log.Warn("pushing the last OTLP metrics", "err", err)
		}
	}()
	a = agent.New(agent.Config{
		NodeName: o.nodeName, ProbeInterval: o.probeInterval, ProbeTimeout: o.probeTimeout, Logger: log,
		Observer:      metrics,
		CertHorizon:   o.certHorizon,
		SlowThreshold: o.slowThreshold,
		ReviewProbe:   o.reviewProbe,
		ObjectChecks:  o.objectChecks && !o.leaderElect, // with an election, the leader turns them on
		Pods:          agent.APIPodLister{Client: client},
	}, agent.NewInventory(client), dp, sinks...)
	for _, s := range sinks {
		if cs, ok := s.(agent.CallSink); ok {
			a.ReportCallsTo(cs) // one span per handshake to a backend
		}
	}
	a.ReportCallsTo(metrics) // hookscope_webhook_calls_total, handshake and response latency
	impacts := agent.NewImpacts(a, client)
	lead := func(ctx context.Context) {
		if err := impacts.Run(ctx, o.metricsInterval); err != nil {
			log.Error("cluster signals", "err", err)
		}
	}
	switch {
	case o.objectChecks && o.leaderElect:
		id := o.nodeName
		if id == "" {
			id, _ = os.Hostname()
		}
		go func() {
			if err := agent.RunLeaderElection(ctx, client, o.leaseNS, id, a, log, lead); err != nil {
				log.Error("leader election", "err", err)
			}
		}()
	case o.objectChecks:
		go lead(ctx)
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s for the agent API: %w", o.listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", a.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("hookscope agent started", "api", "http://"+ln.Addr().String(), "node", o.nodeName, "apiserver", cfg.Host, "ebpf", dp != nil)

	return a.Run(ctx)
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
func checkAPIServer(ctx context.Context, client kubernetes.Interface, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.Discovery().ServerVersion()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("cannot reach the API server at %s: %v (check the kubeconfig and that the API server is up)", host, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cannot reach the API server at %s: no answer within 10s (check the kubeconfig and that the API server is up)", host)
	}
}
