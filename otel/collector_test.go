//go:build linux

package otel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// The tests here run otelcol-hookscope, a real OpenTelemetry Collector
// built by tools/collector/build.sh with the components deploy/collector
// uses. They skip when it is not built.

// collectorBinary returns the collector's path or skips the test.
func collectorBinary(t *testing.T) string {
	t.Helper()
	var bin string
	switch {
	case os.Getenv("HOOKSCOPE_TOOLS_BIN") != "":
		bin = filepath.Join(os.Getenv("HOOKSCOPE_TOOLS_BIN"), "otelcol-hookscope")
	case os.Getenv("HOOKSCOPE_CACHE") != "":
		bin = filepath.Join(os.Getenv("HOOKSCOPE_CACHE"), "bin", "current", "otelcol-hookscope")
	default:
		home, _ := os.UserHomeDir()
		bin = filepath.Join(home, ".cache", "hookscope", "bin", "current", "otelcol-hookscope")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no collector at %s: run tools/collector/build.sh to build it", bin)
	}
	return bin
}

// collectorEnv is a clean environment: no AWS or OTEL settings of the
// machine, no proxy, AWS credentials that are fake and IMDS off, so the AWS
// exporters talk to nothing but the endpoints a test gives them.
func collectorEnv(extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"AWS_ACCESS_KEY_ID=AKIDHOOKSCOPETEST",
		"AWS_SECRET_ACCESS_KEY=hookscope-test-secret",
		"AWS_EC2_METADATA_DISABLED=true",
	}, extra...)
}

// quietTelemetry keeps the collector's own metrics endpoint (localhost:8888
// by default) closed, so collectors of parallel tests never collide.
const quietTelemetry = "yaml:service::telemetry::metrics::level: none"

// TestCollectorConfigsValidate runs `otelcol-hookscope validate` on every
// collector configuration shipped in deploy/collector, and checks that a
// broken one fails, so the check means something.
func TestCollectorConfigsValidate(t *testing.T) {
	bin := collectorBinary(t)
	configs, err := filepath.Glob("../deploy/collector/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(path string) (string, error) {
		cmd := exec.Command(bin, "validate", "--config", path)
		cmd.Env = collectorEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	n := 0
	for _, c := range configs {
		if filepath.Base(c) == "cloudwatch-alarms.yaml" { // CloudFormation, checked below
			continue
		}
		n++
		if out, err := validate(c); err != nil {
			t.Errorf("%s: %v\n%s", c, err, out)
		}
	}
	if n < 2 {
		t.Fatalf("found %d collector configurations in deploy/collector (%v), want jaeger.yaml and xray.yaml", n, configs)
	}
	good, err := os.ReadFile("../deploy/collector/xray.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, bytes.Replace(good, []byte("metric_name_selectors"), []byte("metric_name_selector"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(bad); err == nil {
		t.Errorf("validate accepted a config with a misspelt key:\n%s", out)
	}
}

// TestCloudWatchAlarmsTemplate lints the CloudFormation template of the
// alarms with cfn-lint, when it is installed.
func TestCloudWatchAlarmsTemplate(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint not installed (pip install cfn-lint)")
	}
	if out, err := exec.Command(lint, "../deploy/collector/cloudwatch-alarms.yaml").CombinedOutput(); err != nil {
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}
}

// collectorProc is a running collector; Stdout holds what it printed there.
type collectorProc struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startCollector runs the collector with args and env until the test ends,
// and returns once ready accepts a connection.
func startCollector(t *testing.T, args, env []string, ready string) *collectorProc {
	t.Helper()
	p := &collectorProc{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(collectorBinary(t), append(args, "--config", quietTelemetry)...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the forking thread: keep it for the child's life.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ready, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("collector exited: %s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not listening on %s: %v\n%s", ready, err, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// busyMetrics is a Metrics with one of everything: a blocking webhook, a
// healthy one, a risk, a probe, calls, exporter stats.
func busyMetrics(t *testing.T, opts ...MetricsOption) *Metrics {
	t.Helper()
	ref := callout.Ref{Kind: "Validating", Configuration: "pod-policy", Name: "pods.policy.example.com"}
	ok := callout.Ref{Kind: "Mutating", Configuration: "sidecar", Name: "inject.example.com"}
	backend := netip.MustParseAddrPort("10.0.1.5:8443")
	m, err := NewMetrics(MetricsState{
		Webhooks: func() []Webhook {
			return []Webhook{{Ref: ref, Local: []netip.AddrPort{backend}}, {Ref: ok}}
		},
		Findings: func() ([]findings.Finding, []findings.Finding) {
			return []findings.Finding{{Webhook: ref, Class: findings.CertExpired, Effect: "writes rejected"}}, nil
		},
		EventsDropped: func() (uint64, error) { return 0, nil },
		Unparsed:      func() (map[string]uint64, error) { return map[string]uint64{"split_record": 1}, nil },
		Risks: func() []Risk {
			return []Risk{{Webhook: ref, Kind: "BlocksSystemPods", Severity: "critical"}}
		},
		Spans: func() SpanStats { return SpanStats{Exported: 10, QueueFull: 2, QueueSize: 2048} },
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveProbe(ref, backend, findings.CertExpired, 2*time.Millisecond, &findings.Certificate{NotAfter: time.Now().Add(-time.Hour)})
	m.ObserveWire("handshake_rejected")
	m.Report(findings.Finding{Webhook: ref, Class: findings.CertExpired, Effect: "writes rejected"})
	t0 := time.Now()
	m.ReportCall(callout.Call{Webhooks: []callout.Ref{ref}, Outcome: "rejected", Start: t0, End: t0.Add(4 * time.Millisecond),
		Events: []callout.CallEvent{{Name: "client_hello", At: t0.Add(time.Millisecond)}, {Name: "server_hello", At: t0.Add(2 * time.Millisecond)}}})
	m.ObserveResponse(ref, 3*time.Millisecond)
	return m
}

// TestOTLPMetricsToCollector pushes the agent's metrics over OTLP (gRPC and
// HTTP) to a real collector that writes them to a file, and reads every
// hookscope metric back from it, with the agent's resource.
func TestOTLPMetricsToCollector(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			ports := freePorts(t, 2)
			out := filepath.Join(t.TempDir(), "metrics.jsonl")
			config := fmt.Sprintf(`
receivers:
  otlp:
    protocols:
      grpc: {endpoint: %q}
      http: {endpoint: %q}
exporters:
  file:
    path: %q
    flush_interval: 100ms
service:
  pipelines:
    metrics: {receivers: [otlp], exporters: [file]}
`, ports[0], ports[1], out)
			cfgPath := filepath.Join(t.TempDir(), "collector.yaml")
			if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			endpoint := ports[0]
			if protocol == "http" {
				endpoint = ports[1]
			}
			startCollector(t, []string{"--config", cfgPath}, collectorEnv(), endpoint)

			m := busyMetrics(t, WithOTLPMetrics(Config{Endpoint: endpoint, Insecure: true, Protocol: protocol,
				NodeName: "node-a", MetricsInterval: 200 * time.Millisecond}))
			defer m.Shutdown(context.Background())

			want := []string{
				MetricWebhookHealth, MetricFindingsOpen, MetricFindings, MetricProbeDuration, MetricCertExpiry,
				MetricWireEvents, MetricBPFEventsDropped, MetricBPFUnparsed, MetricWebhookRisks, MetricWebhookCalls,
				MetricHandshakeDuration, MetricResponseDuration, MetricExporterSpans, MetricExporterQueue, MetricExporterCapacity,
			}
			var got map[string]bool
			var resource map[string]string
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				got, resource = readOTLPMetricsFile(t, out)
				if len(missing(want, got)) == 0 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if miss := missing(want, got); len(miss) > 0 {
				t.Fatalf("the collector received %v; missing %v", keysOf(got), miss)
			}
			if resource["service.name"] != DefaultServiceName || resource["k8s.node.name"] != "node-a" {
				t.Errorf("resource %v, want service.name %s and k8s.node.name node-a", resource, DefaultServiceName)
			}
		})
	}
}

// readOTLPMetricsFile reads the file exporter's OTLP/JSON lines: the metric
// names and the last resource's string attributes.
func readOTLPMetricsFile(t *testing.T, path string) (map[string]bool, map[string]string) {
	t.Helper()
	names, resource := map[string]bool{}, map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return names, resource
	}
	type kv struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var doc struct {
			ResourceMetrics []struct {
				Resource struct {
					Attributes []kv `json:"attributes"`
				} `json:"resource"`
				ScopeMetrics []struct {
					Metrics []struct {
						Name string `json:"name"`
					} `json:"metrics"`
				} `json:"scopeMetrics"`
			} `json:"resourceMetrics"`
		}
		if json.Unmarshal(line, &doc) != nil {
			continue // a line being written
		}
		for _, rm := range doc.ResourceMetrics {
			for _, a := range rm.Resource.Attributes {
				resource[a.Key] = a.Value.StringValue
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					names[m.Name] = true
				}
			}
		}
	}
	return names, resource
}

func missing(want []string, got map[string]bool) []string {
	var out []string
	for _, w := range want {
		if !got[w] {
			out = append(out, w)
		}
	}
	return out
}

// fakeAWS stands in for the AWS APIs on loopback: it records every call
// and answers X-Ray's PutTraceSegments.
type fakeAWS struct {
	mu       sync.Mutex
	segments []string // X-Ray segment documents received
	other    []string // any other call: none is expected
}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodPost && r.URL.Path == "/TraceSegments" {
		var req struct{ TraceSegmentDocuments []string }
		if err := json.Unmarshal(body, &req); err == nil {
			f.segments = append(f.segments, req.TraceSegmentDocuments...)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"UnprocessedTraceSegments":[]}`))
			return
		}
	}
	f.other = append(f.other, r.Method+" "+r.URL.String()+" "+r.Header.Get("X-Amz-Target"))
	http.Error(w, "not faked", http.StatusBadRequest)
}

func (f *fakeAWS) received() (segments, other []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.segments), slices.Clone(f.other)
}

// TestXRayConfig runs deploy/collector/xray.yaml as shipped in a real
// collector, with X-Ray pointed at a local fake and the EMF written to
// stdout, and feeds it the agent's spans and metrics:
//   - with the awsxray exporter's strict trace ID check on (as older
//     collectors and ADOT releases have it), spans with X-Ray trace IDs
//     (Config.XRayTraceIDs) become segments with the time in their ID, and
//     spans with the SDK's random IDs are refused;
//   - every alarm in cloudwatch-alarms.yaml queries a metric and dimension
//     set that the EMF holds, and the blocking alarm's query would see 1.
func TestXRayConfig(t *testing.T) {
	collectorBinary(t) // skips when it is not built
	aws := &fakeAWS{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: aws, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	defer srv.Close()
	fake := "http://" + l.Addr().String()

	ports := freePorts(t, 2)
	col := startCollector(t,
		[]string{"--config", "../deploy/collector/xray.yaml", "--feature-gates=-exporter.awsxray.skiptimestampvalidation",
			// The exporter says why it drops a span only at debug level.
			"--config", "yaml:service::telemetry::logs::level: debug"},
		collectorEnv("OTLP_GRPC_LISTEN="+ports[0], "OTLP_HTTP_LISTEN="+ports[1], "AWS_REGION=us-east-1",
			"EMF_OUTPUT=stdout", "XRAY_ENDPOINT="+fake, "CLOUDWATCH_LOGS_ENDPOINT="+fake),
		ports[0])

	// Spans: one exporter with X-Ray IDs, one without.
	ctx := t.Context()
	for _, xray := range []bool{true, false} {
		exp, err := NewExporter(ctx, Config{Endpoint: ports[0], Insecure: true, XRayTraceIDs: xray})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			f := certExpiredFinding(time.Now())
			f.ID = fmt.Sprintf("xray-%v-%d", xray, i)
			exp.Report(f)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := exp.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	// Metrics: pushed every 200ms; counters need two pushes for a delta.
	m := busyMetrics(t, WithOTLPMetrics(Config{Endpoint: ports[0], Insecure: true, MetricsInterval: 200 * time.Millisecond}))
	defer m.Shutdown(context.Background())

	alarms := alarmQueries(t)
	var emf []emfRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		segments, _ := aws.received()
		emf = parseEMF(col.stdout.String())
		if len(segments) >= 3 && len(unmatched(alarms, emf)) == 0 && len(emfFor(emf, MetricExporterSpans)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after 30s: %d segments, alarms without EMF %v", len(segments), unmatched(alarms, emf))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // let any late segment (a wrongly accepted random ID) arrive

	segments, other := aws.received()
	if len(other) > 0 {
		t.Errorf("the collector called AWS APIs other than X-Ray PutTraceSegments: %v", other)
	}
	now := time.Now().Unix()
	idPattern := regexp.MustCompile(`^1-([0-9a-f]{8})-[0-9a-f]{24}$`)
	var ids []string
	for _, doc := range segments {
		var seg struct {
			TraceID     string `json:"trace_id"`
			Annotations map[string]any
		}
		if err := json.Unmarshal([]byte(doc), &seg); err != nil {
			t.Fatalf("segment %s: %v", doc, err)
		}
		mt := idPattern.FindStringSubmatch(seg.TraceID)
		var at int64
		if mt != nil {
			fmt.Sscanf(mt[1], "%x", &at)
		}
		if mt == nil || now-at > 60 || at > now {
			t.Errorf("segment trace_id %q: want 1-<time now in hex>-<24 hex>", seg.TraceID)
		}
		id, _ := seg.Annotations["hookscope_finding_id"].(string)
		if id == "" {
			id, _ = seg.Annotations["hookscope.finding.id"].(string)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(segments) > 0 {
		t.Logf("X-Ray got %d segments; the first: %s", len(segments), segments[0])
	}
	if want := []string{"xray-true-0", "xray-true-1", "xray-true-2"}; !slices.Equal(ids, want) {
		t.Errorf("X-Ray got segments for findings %v, want %v (only the spans with X-Ray trace IDs)", ids, want)
	}
	if !strings.Contains(col.stderr.String(), "invalid xray traceid") {
		t.Errorf("the collector's log does not say it refused the random trace IDs")
	}

	for _, a := range alarms {
		recs := matching(a, emf)
		if len(recs) == 0 {
			t.Errorf("alarm %s queries %s over dimensions %v: no such EMF record", a.name, a.metric, a.dims)
		}
		if a.name == "WebhookBlockingWrites" {
			breach := false
			for _, r := range recs {
				if r.fields["effect"] == "writes rejected" && r.fields["class"] != "Healthy" && r.fields[a.metric] == float64(1) {
					breach = true
				}
			}
			if !breach {
				t.Errorf("alarm %s: no EMF record with effect 'writes rejected', class not Healthy and value 1: %+v", a.name, recs)
			}
		}
	}
	if t.Failed() {
		t.Logf("EMF:\n%s", col.stdout.String())
	}
}

// alarmQuery is what one alarm of cloudwatch-alarms.yaml selects.
type alarmQuery struct {
	name   string
	metric string
	dims   []string
}

// alarmQueries reads the Metrics Insights queries of the alarms template:
// SELECT F("metric") FROM SCHEMA("${Namespace}", dim, ...).
func alarmQueries(t *testing.T) []alarmQuery {
	t.Helper()
	f, err := os.Open("../deploy/collector/cloudwatch-alarms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resource := regexp.MustCompile(`^  ([A-Za-z]+):$`)
	query := regexp.MustCompile(`SELECT [A-Z]+\("([a-z.]+)"\) FROM SCHEMA\("\$\{Namespace\}", ([a-z, ]+)\)`)
	var out []alarmQuery
	var name string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := resource.FindStringSubmatch(sc.Text()); m != nil {
			name = m[1]
		}
		if m := query.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, alarmQuery{name: name, metric: m[1], dims: strings.Split(strings.ReplaceAll(m[2], " ", ""), ",")})
		}
	}
	if len(out) < 4 {
		t.Fatalf("found %d alarm queries in cloudwatch-alarms.yaml: %+v", len(out), out)
	}
	return out
}

// emfRecord is one EMF line: its metric directives and its fields.
type emfRecord struct {
	namespace string
	metrics   []string
	dims      [][]string
	fields    map[string]any
}

func parseEMF(stdout string) []emfRecord {
	var out []emfRecord
	for _, line := range strings.Split(stdout, "\n") {
		var fields map[string]any
		if json.Unmarshal([]byte(line), &fields) != nil {
			continue
		}
		var meta struct {
			AWS struct {
				CloudWatchMetrics []struct {
					Namespace  string
					Dimensions [][]string
					Metrics    []struct{ Name string }
				}
			} `json:"_aws"`
		}
		if json.Unmarshal([]byte(line), &meta) != nil {
			continue
		}
		for _, d := range meta.AWS.CloudWatchMetrics {
			r := emfRecord{namespace: d.Namespace, dims: d.Dimensions, fields: fields}
			for _, m := range d.Metrics {
				r.metrics = append(r.metrics, m.Name)
			}
			out = append(out, r)
		}
	}
	return out
}

func emfFor(recs []emfRecord, metric string) []emfRecord {
	var out []emfRecord
	for _, r := range recs {
		if slices.Contains(r.metrics, metric) {
			out = append(out, r)
		}
	}
	return out
}

// matching are the EMF records a Metrics Insights SCHEMA query sees: the
// namespace, the metric, and exactly the query's dimension set.
func matching(a alarmQuery, recs []emfRecord) []emfRecord {
	want := slices.Sorted(slices.Values(a.dims))
	var out []emfRecord
	for _, r := range emfFor(recs, a.metric) {
		if r.namespace != "Hookscope" {
			continue
		}
		for _, d := range r.dims {
			if slices.Equal(slices.Sorted(slices.Values(d)), want) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func unmatched(alarms []alarmQuery, recs []emfRecord) []string {
	var out []string
	for _, a := range alarms {
		if len(matching(a, recs)) == 0 {
			out = append(out, a.name)
		}
	}
	return out
}
