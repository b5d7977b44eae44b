//go:build linux

// Package jaeger runs a real Jaeger v2 all-in-one as a child process, for
// tests and game days: hookscope's spans go to it over OTLP exactly as they
// would go to a collector in a cluster, and are read back through its query
// API, so a test checks what an SRE would see in the Jaeger UI.
//
// Every listener is on 127.0.0.1 and on a port picked free for this run, so
// two Jaegers can run at once and a leftover one on 4317/16686 never
// receives a test's spans. Storage is in memory: nothing outlives Stop.
//
// The binary is built by `make tools` (tools/build.sh); Binary finds it.
package jaeger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// readyTimeout bounds how long Start waits for Jaeger to answer.
const readyTimeout = 60 * time.Second

// stopGrace is how long Stop waits after SIGTERM before it kills Jaeger.
const stopGrace = 5 * time.Second

// startAttempts is how many times Start picks new ports when Jaeger could
// not bind one (another process took it between our pick and Jaeger's bind).
const startAttempts = 3

// Binary returns the path of the Jaeger v2 binary that `make tools` builds:
// $HOOKSCOPE_TOOLS_BIN/jaeger when that variable is set, else
// $HOOKSCOPE_CACHE/bin/current/jaeger (default cache ~/.cache/hookscope).
// It fails, saying to run `make tools`, when no executable is there.
func Binary() (string, error) {
	var bin string
	switch {
	case os.Getenv("HOOKSCOPE_TOOLS_BIN") != "":
		bin = filepath.Join(os.Getenv("HOOKSCOPE_TOOLS_BIN"), "jaeger")
	case os.Getenv("HOOKSCOPE_CACHE") != "":
		bin = filepath.Join(os.Getenv("HOOKSCOPE_CACHE"), "bin", "current", "jaeger")
	default:
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the jaeger binary: %w", err)
		}
		bin = filepath.Join(home, ".cache", "hookscope", "bin", "current", "jaeger")
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("finding the jaeger binary: %w; run `make tools` to build it (or set HOOKSCOPE_TOOLS_BIN to the directory that holds it)", err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("finding the jaeger binary: %s is not an executable file; run `make tools` to build it", bin)
	}
	return bin, nil
}

// Server is a running Jaeger v2 all-in-one. Stop it when done.
type Server struct {
	binary   string
	dir      string
	ports    ports
	logPath  string
	logStart int64  // offset of this run's first line in logPath
	queryURL string // set for Remote
	http     *http.Client

	// exited is closed when the process has exited; waitErr is then set.
	exited  chan struct{}
	waitErr error
	proc    *os.Process

	stopOnce sync.Once
	stopErr  error
}

// ports are the listeners of one Jaeger, all on 127.0.0.1.
type ports struct {
	// OTLPHost is where the OTLP receivers listen: 127.0.0.1 on this
	// machine, every address in a pod (its Service sends spans there).
	OTLPHost  string
	OTLPGRPC  int // receivers.otlp grpc
	OTLPHTTP  int // receivers.otlp http
	QueryHTTP int // jaeger_query http: UI and /api/*
	QueryGRPC int // jaeger_query grpc
	Metrics   int // the collector's own Prometheus metrics
}

// configTemplate is Jaeger's all-in-one.yaml (cmd/jaeger/internal in
// jaegertracing/jaeger v1.76.0) reduced to what hookscope uses: OTLP in,
// memory storage, the query API out. The Jaeger/Zipkin receivers,
// remote_sampling, healthcheckv2, expvar and zpages are left out so they
// open no listener at all; every listener that remains is on 127.0.0.1 and
// a port picked for this run.
var configTemplate = template.Must(template.New("config").Parse(`# Written by hookscope internal/jaeger for one test run.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {{.Metrics}}
    logs:
      level: info

extensions:
  jaeger_query:
    storage:
      traces: some_storage
    # On by default in v2, it would send Jaeger's own spans to the OTLP
    # default localhost:4317, i.e. to whatever else listens there.
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{{.QueryHTTP}}
    grpc:
      endpoint: 127.0.0.1:{{.QueryGRPC}}

  jaeger_storage:
    backends:
      some_storage:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {{.OTLPHost}}:{{.OTLPGRPC}}
      http:
        endpoint: {{.OTLPHost}}:{{.OTLPHTTP}}

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: some_storage
`))

// Pod ports of PodConfig: Jaeger's usual ones.
const (
	PodOTLPGRPCPort  = 4317
	PodOTLPHTTPPort  = 4318
	PodQueryHTTPPort = 16686
)

// PodConfig is the configuration for a Jaeger in a pod: OTLP on every
// address of the pod (its Service's), the query API and metrics on the
// pod's loopback only (reached through a port-forward).
func PodConfig() ([]byte, error) {
	var cfg bytes.Buffer
	err := configTemplate.Execute(&cfg, ports{OTLPHost: "0.0.0.0", OTLPGRPC: PodOTLPGRPCPort, OTLPHTTP: PodOTLPHTTPPort,
		QueryHTTP: PodQueryHTTPPort, QueryGRPC: 16685, Metrics: 8888})
	return cfg.Bytes(), err
}

// Remote is a Server for a Jaeger that runs elsewhere (a pod), queried at
// queryURL (a port-forward to its query port): the query methods work,
// Stop and Kill do nothing to it.
func Remote(queryURL string) *Server {
	s := &Server{
		queryURL: queryURL,
		http:     &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second},
		exited:   make(chan struct{}),
	}
	s.stopOnce.Do(func() {})
	close(s.exited) // nothing of it runs here
	return s
}

// Start runs binary (a Jaeger v2 all-in-one) with a config written into
// dir, logging to dir/jaeger.log, and returns once its query API answers
// and its OTLP gRPC port accepts connections (at most 60 s, or until ctx
// ends). ctx bounds only the start; the process runs until Stop.
func Start(ctx context.Context, binary, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting jaeger: creating %s: %w", dir, err)
	}
	logPath := filepath.Join(dir, "jaeger.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		return nil, fmt.Errorf("starting jaeger: creating log: %w", err)
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		s, err := start(ctx, binary, dir, logPath)
		if err == nil {
			return s, nil
		}
		lastErr = err
		// Retry only a lost race for a port; anything else will fail again.
		if !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// errPortTaken marks a start that failed because a port was taken.
var errPortTaken = errors.New("a port was taken")

func start(ctx context.Context, binary, dir, logPath string) (*Server, error) {
	p, err := pickPorts()
	if err != nil {
		return nil, fmt.Errorf("starting jaeger: picking ports: %w", err)
	}
	return startOn(ctx, binary, dir, logPath, p)
}

// Restart starts a new Jaeger on the ports of s, which must have stopped
// (Stop or Kill): what a collector that crashed and came back looks like
// to an exporter. Its storage starts empty. The log goes on in the same
// file. ctx bounds only the start.
func (s *Server) Restart(ctx context.Context) (*Server, error) {
	select {
	case <-s.exited:
	default:
		return nil, errors.New("restarting jaeger: it is still running; Stop or Kill it first")
	}
	return startOn(ctx, s.binary, s.dir, s.logPath, s.ports)
}

func startOn(ctx context.Context, binary, dir, logPath string, p ports) (*Server, error) {
	var cfg bytes.Buffer
	if err := configTemplate.Execute(&cfg, p); err != nil {
		return nil, fmt.Errorf("starting jaeger: rendering config: %w", err)
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("starting jaeger: writing config: %w", err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("starting jaeger: opening log: %w", err)
	}
	// This attempt's lines start here; an earlier attempt's do not count.
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting jaeger: opening log: %w", err)
	}
	fmt.Fprintf(logFile, "--- hookscope: %s --config %s (otlp grpc %d, otlp http %d, query %d)\n",
		binary, cfgPath, p.OTLPGRPC, p.OTLPHTTP, p.QueryHTTP)

	cmd := exec.Command(binary, "--config", cfgPath)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Jaeger dies with the test process, so a crashed `go test` leaves no
	// Jaeger behind. Pdeathsig fires when the thread that forked exits,
	// hence the goroutine below keeps its thread locked for the child's life.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	s := &Server{
		binary:   binary,
		dir:      dir,
		ports:    p,
		logPath:  logPath,
		logStart: logStart,
		// Everything is on loopback: never a proxy.
		http:   &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second},
		exited: make(chan struct{}),
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer logFile.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		s.proc = cmd.Process
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting jaeger %s: %w", binary, err)
	}

	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		if strings.Contains(s.logTail(1000), "address already in use") {
			err = fmt.Errorf("%w (%w)", err, errPortTaken)
		}
		return nil, err
	}
	return s, nil
}

// childEnv is this process's environment without OTEL_* variables, so
// nothing meant for hookscope's own exporters redirects Jaeger's telemetry.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// pickPorts asks the kernel for free loopback ports, holding all of them
// open at once so they differ, then releases them for Jaeger to bind.
func pickPorts() (ports, error) {
	var got [5]int
	for i := range got {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, err
		}
		defer l.Close()
		got[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports{OTLPHost: "127.0.0.1", OTLPGRPC: got[0], OTLPHTTP: got[1], QueryHTTP: got[2], QueryGRPC: got[3], Metrics: got[4]}, nil
}

// waitReady polls until the query API answers and the OTLP gRPC port
// accepts connections.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("starting jaeger: it exited before it was ready (%v); see %s:\n%s", s.waitErr, s.logPath, s.logTail(15))
		case <-ctx.Done():
			return fmt.Errorf("starting jaeger: not ready (%v) after waiting: %w; see %s:\n%s", err, ctx.Err(), s.logPath, s.logTail(15))
		case <-tick.C:
		}
	}
}

func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.QueryURL()+"/api/services", nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("query API: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("query API: %s", resp.Status)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.OTLPGRPCEndpoint())
	if err != nil {
		return fmt.Errorf("OTLP gRPC: %w", err)
	}
	return c.Close()
}

// logTail returns the last n lines this run wrote to the log file, for
// error messages.
func (s *Server) logTail(n int) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(s.logStart, io.SeekStart); err != nil {
		return ""
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// OTLPGRPCEndpoint is the host:port of Jaeger's OTLP gRPC receiver.
func (s *Server) OTLPGRPCEndpoint() string { return hostPort(s.ports.OTLPGRPC) }

// OTLPHTTPEndpoint is the host:port of Jaeger's OTLP HTTP receiver.
func (s *Server) OTLPHTTPEndpoint() string { return hostPort(s.ports.OTLPHTTP) }

// QueryURL is the base URL of Jaeger's UI and query API.
func (s *Server) QueryURL() string {
	if s.queryURL != "" {
		return s.queryURL
	}
	return "http://" + hostPort(s.ports.QueryHTTP)
}

// LogPath is the file that holds Jaeger's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Stop sends SIGTERM, kills Jaeger if it has not exited a few seconds later,
// and waits for it. It is safe to call more than once; later calls return
// the first call's result. It reports an error when Jaeger had already
// exited on its own, since then a test may have lost spans.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			if s.waitErr != nil {
				s.stopErr = fmt.Errorf("stopping jaeger: it had already exited (%w); see %s", s.waitErr, s.logPath)
			}
			return
		default:
		}
		if err := s.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.stopErr = fmt.Errorf("stopping jaeger: sending SIGTERM: %w", err)
		}
		select {
		case <-s.exited:
			return
		case <-time.After(stopGrace):
		}
		if err := s.proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.stopErr = fmt.Errorf("stopping jaeger: killing it: %w", err)
			return
		}
		<-s.exited
	})
	return s.stopErr
}

// Kill ends Jaeger at once with SIGKILL, as a crash or an OOM kill would:
// nothing queued in it is flushed, and its in-memory traces are gone. It
// waits for the process to exit. Stop after Kill returns nil.
func (s *Server) Kill() error {
	var err error
	killed := false
	s.stopOnce.Do(func() {
		killed = true
		if e := s.proc.Kill(); e != nil && !errors.Is(e, os.ErrProcessDone) {
			err = fmt.Errorf("killing jaeger: %w", e)
			s.stopErr = err
			return
		}
		<-s.exited
	})
	if !killed {
		return errors.New("killing jaeger: it was already stopped")
	}
	return err
}

// Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	TraceID string
	Spans   []Span
}

// Span is one span of a Trace. Attribute values are stringified: an int
// attribute 8443 reads "8443", a bool reads "true".
type Span struct {
	TraceID       string
	SpanID        string
	OperationName string
	Start         time.Time
	Duration      time.Duration
	// Tags are the span's attributes plus what Jaeger derives from the span:
	// otel.status_code ("ERROR", "OK"), otel.status_description, error,
	// span.kind, otel.scope.name.
	Tags map[string]string
	// Events are the span's events (Jaeger calls them logs).
	Events []SpanEvent
	// Process is the resource: the service name under "service.name" plus
	// the process tags (the other resource attributes).
	Process map[string]string
	// References are the span's parent and its links (OTel span links
	// arrive as FOLLOWS_FROM references).
	References []Reference
}

// Reference is a span's reference to another span.
type Reference struct {
	RefType string // CHILD_OF or FOLLOWS_FROM
	TraceID string
	SpanID  string
}

// SpanEvent is one span event.
type SpanEvent struct {
	Time       time.Time
	Name       string
	Attributes map[string]string
}

// The query API's JSON, as Jaeger's internal/uimodel defines it.
type (
	apiResponse struct {
		Data   []apiTrace `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	apiTrace struct {
		TraceID   string                `json:"traceID"`
		Spans     []apiSpan             `json:"spans"`
		Processes map[string]apiProcess `json:"processes"`
	}
	apiSpan struct {
		TraceID       string        `json:"traceID"`
		SpanID        string        `json:"spanID"`
		OperationName string        `json:"operationName"`
		StartTime     int64         `json:"startTime"` // µs since the epoch
		Duration      int64         `json:"duration"`  // µs
		Tags          []apiKeyValue `json:"tags"`
		Logs          []apiLog      `json:"logs"`
		ProcessID     string        `json:"processID"`
		Process       *apiProcess   `json:"process"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	}
	apiProcess struct {
		ServiceName string        `json:"serviceName"`
		Tags        []apiKeyValue `json:"tags"`
	}
	apiLog struct {
		Timestamp int64         `json:"timestamp"` // µs since the epoch
		Fields    []apiKeyValue `json:"fields"`
	}
	apiKeyValue struct {
		Key   string          `json:"key"`
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
)

// FindTraces returns the traces of service whose spans carry all of tags
// (attribute name to stringified value; nil for any), newest first, at
// most 100, through GET /api/traces.
func (s *Server) FindTraces(ctx context.Context, service string, tags map[string]string) ([]Trace, error) {
	q := url.Values{}
	q.Set("service", service)
	if len(tags) > 0 {
		t, err := json.Marshal(tags)
		if err != nil {
			return nil, fmt.Errorf("finding traces: encoding tags: %w", err)
		}
		q.Set("tags", string(t))
	}
	// Jaeger v2 ignores lookback on /api/traces (it searches the last two
	// days unless start is set); the UI sends it, so do we.
	q.Set("lookback", "1h")
	q.Set("limit", "100")
	u := s.QueryURL() + "/api/traces?" + q.Encode()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("finding traces: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("finding traces: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("finding traces: reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("finding traces: GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(body))
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("finding traces: decoding the answer to GET %s: %w", u, err)
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("finding traces: GET %s: jaeger says %q", u, r.Errors[0].Msg)
	}
	traces := make([]Trace, 0, len(r.Data))
	for _, at := range r.Data {
		traces = append(traces, convertTrace(at))
	}
	return traces, nil
}

// GetTrace returns one trace by its ID, through GET /api/traces/{id}.
func (s *Server) GetTrace(ctx context.Context, traceID string) (Trace, error) {
	u := s.QueryURL() + "/api/traces/" + url.PathEscape(traceID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: %w", traceID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Trace{}, fmt.Errorf("getting trace %s: GET %s: %s: %s", traceID, u, resp.Status, bytes.TrimSpace(body))
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return Trace{}, fmt.Errorf("getting trace %s: decoding: %w", traceID, err)
	}
	if len(r.Data) != 1 {
		return Trace{}, fmt.Errorf("getting trace %s: %d traces in the answer, want 1", traceID, len(r.Data))
	}
	return convertTrace(r.Data[0]), nil
}

// WaitForTraces polls FindTraces until it returns at least min traces, and
// returns them, or fails when ctx ends.
func (s *Server) WaitForTraces(ctx context.Context, service string, tags map[string]string, min int) ([]Trace, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var (
		found   int
		lastErr error
	)
	for {
		traces, err := s.FindTraces(ctx, service, tags)
		if err == nil && len(traces) >= min {
			return traces, nil
		}
		if err != nil {
			lastErr = err
		} else {
			found, lastErr = len(traces), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d traces of service %q with tags %v: found %d before %w (last error: %v)",
				min, service, tags, found, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

func convertTrace(at apiTrace) Trace {
	t := Trace{TraceID: at.TraceID, Spans: make([]Span, 0, len(at.Spans))}
	for _, as := range at.Spans {
		proc := as.Process
		if proc == nil {
			if p, ok := at.Processes[as.ProcessID]; ok {
				proc = &p
			}
		}
		sp := Span{
			TraceID:       as.TraceID,
			SpanID:        as.SpanID,
			OperationName: as.OperationName,
			Start:         time.UnixMicro(as.StartTime),
			Duration:      time.Duration(as.Duration) * time.Microsecond,
			Tags:          keyValues(as.Tags),
			Process:       map[string]string{},
		}
		if proc != nil {
			sp.Process = keyValues(proc.Tags)
			sp.Process["service.name"] = proc.ServiceName
		}
		for _, r := range as.References {
			sp.References = append(sp.References, Reference{RefType: r.RefType, TraceID: r.TraceID, SpanID: r.SpanID})
		}
		for _, l := range as.Logs {
			ev := SpanEvent{Time: time.UnixMicro(l.Timestamp), Attributes: keyValues(l.Fields)}
			// OTel's event name travels as the field "event".
			ev.Name = ev.Attributes["event"]
			delete(ev.Attributes, "event")
			sp.Events = append(sp.Events, ev)
		}
		sort.SliceStable(sp.Events, func(i, j int) bool { return sp.Events[i].Time.Before(sp.Events[j].Time) })
		t.Spans = append(t.Spans, sp)
	}
	return t
}

func keyValues(kvs []apiKeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = stringValue(kv.Value)
	}
	return m
}

// stringValue keeps a JSON string's contents and any other JSON value's
// text as is, so an int64 keeps every digit.
func stringValue(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}
