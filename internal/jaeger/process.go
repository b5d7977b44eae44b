//go:build linux

package jaeger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// readyTimeout bounds how long Start waits for Jaeger to answer.
const readyTimeout = 60 * time.Second

// stopGrace is how long Stop waits after SIGTERM before it kills Jaeger.
const stopGrace = 5 * time.Second

// startAttempts is how many times Start picks new ports when Jaeger could
// not bind one (another process took it between our pick and Jaeger's bind).
const startAttempts = 3

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

// startOn starts Jaeger on the ports p and returns once it is ready; a
// start that failed because a port was taken wraps errPortTaken.
func startOn(ctx context.Context, binary, dir, logPath string, p ports) (*Server, error) {
	cfgPath, err := writeConfig(dir, p)
	if err != nil {
		return nil, err
	}
	logFile, logStart, err := openLog(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "--- hookscope: %s --config %s (otlp grpc %d, otlp http %d, query %d)\n",
		binary, cfgPath, p.OTLPGRPC, p.OTLPHTTP, p.QueryHTTP)

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
	if err := s.spawn(cfgPath, logFile); err != nil {
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

// writeConfig renders the configuration for the ports p into
// dir/jaeger.yaml and returns its path.
func writeConfig(dir string, p ports) (string, error) {
	var cfg bytes.Buffer
	if err := configTemplate.Execute(&cfg, p); err != nil {
		return "", fmt.Errorf("starting jaeger: rendering config: %w", err)
	}
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("starting jaeger: writing config: %w", err)
	}
	return cfgPath, nil
}

// openLog opens the log file for appending and returns it with the offset
// at which this attempt's lines start.
func openLog(logPath string) (*os.File, int64, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("starting jaeger: opening log: %w", err)
	}
	// This attempt's lines start here; an earlier attempt's do not count.
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		logFile.Close()
		return nil, 0, fmt.Errorf("starting jaeger: opening log: %w", err)
	}
	return logFile, logStart, nil
}

// spawn starts s.binary with the config at cfgPath, its output to logFile,
// which it closes when the process exits, and returns once the process has
// started: then s.proc is set, and s.exited closes when it exits.
func (s *Server) spawn(cfgPath string, logFile *os.File) error {
	cmd := exec.Command(s.binary, "--config", cfgPath)
	cmd.Dir = s.dir
	cmd.Env = childEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Jaeger dies with the test process, so a crashed `go test` leaves no
	// Jaeger behind. Pdeathsig fires when the thread that forked exits,
	// hence the goroutine below keeps its thread locked for the child's life.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

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
	return <-started
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
