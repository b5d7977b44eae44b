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
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The package's parts live in files by concern: the configuration Jaeger
// runs with (config.go), starting and stopping its process (process.go),
// the query API client (query.go) and the decoding of its traces
// (trace.go). This file holds the Server and where it listens.

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
