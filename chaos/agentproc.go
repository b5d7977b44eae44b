package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// AgentProcess is the hookscope agent run as a separate process, as the
// DaemonSet runs it on a node. The game day talks to it only through its
// HTTP API and its spans: no agent package is imported here.
type AgentProcess struct {
	cmd     *exec.Cmd
	args    []string // what it was started with, for Restart
	binary  string
	logPath string
	done    chan error
	// apis are the agents' API base URLs: this process's, or every agent
	// of a DaemonSet (kind), read as one, since a finding is reported by
	// the agent that saw it (a backend's node, or the Lease holder).
	apis []string
}

// AgentPods reads the agents whose APIs are at the given base URLs as one.
func AgentPods(apis []string) *AgentProcess {
	return &AgentProcess{apis: apis, done: make(chan error, 1)}
}

// each calls fn with each agent's API; it fails only when every call does.
func (p *AgentProcess) each(fn func(api string) error) error {
	var errs []error
	for _, api := range p.apis {
		if err := fn(api); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(p.apis) {
		return errors.Join(errs...)
	}
	return nil
}

// AgentEvidence is one piece of a finding's evidence.
type AgentEvidence struct {
	Source string    `json:"source"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail"`
}

// AgentFinding is a finding as the agent's /findings API returns it.
type AgentFinding struct {
	ID      string `json:"id"`
	Class   string `json:"class"`
	Webhook struct {
		Kind          string `json:"kind"`
		Configuration string `json:"configuration"`
		Name          string `json:"name"`
	} `json:"webhook"`
	FailurePolicy string          `json:"failurePolicy"`
	Effect        string          `json:"effect"`
	Backend       string          `json:"backend"`
	FirstFailure  time.Time       `json:"firstFailure"`
	FirstSeen     time.Time       `json:"firstSeen"`
	Resolved      *time.Time      `json:"resolved"`
	Evidence      []AgentEvidence `json:"evidence"`
	Remediation   string          `json:"remediation"`
	Untraced      string          `json:"untraced"`
	Impact        *struct {
		Kind   string    `json:"kind"`
		Node   string    `json:"node"`
		Object string    `json:"object"`
		Since  time.Time `json:"since"`
		Detail string    `json:"detail"`
	} `json:"impact"`
}

// Sources lists the evidence sources of the finding, in order.
func (f AgentFinding) Sources() []string {
	var out []string
	for _, e := range f.Evidence {
		out = append(out, e.Source)
	}
	return out
}

// AgentOptions are the flags the game day gives the agent.
type AgentOptions struct {
	Binary       string // the hookscope binary
	Kubeconfig   string
	NodeName     string
	OTLPEndpoint string
	Dir          string // its log goes here
	ExtraArgs    []string
}

// StartAgent runs `hookscope agent` and waits until its inventory synced.
func StartAgent(ctx context.Context, o AgentOptions) (*AgentProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("starting agent: %w", err)
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := &AgentProcess{apis: []string{api}, logPath: filepath.Join(o.Dir, "agent.log"), binary: o.Binary}
	p.args = append([]string{"agent",
		"--kubeconfig", o.Kubeconfig,
		"--node-name", o.NodeName,
		"--otlp-endpoint", o.OTLPEndpoint,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--log-level", "debug",
	}, o.ExtraArgs...)
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// start runs the agent with p's arguments, its output appended to its log,
// and waits until its inventory synced.
func (p *AgentProcess) start(ctx context.Context) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("starting agent: %w", err)
	}
	p.done = make(chan error, 1)
	p.cmd = exec.Command(p.binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting agent %s: %w", p.binary, err)
	}
	done := p.done
	go func() { done <- p.cmd.Wait(); logf.Close() }()
	api := p.apis[0]
	// Every 10 ms: the bench times the agent's start from this wait, and a
	// 100 ms poll rounded each start up to its next tenth of a second.
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("agent exited: %v", err)
		default:
		}
		resp, err := http.Get(api + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		p.Stop()
		return fmt.Errorf("waiting for the agent to sync: %w; last log lines:\n%s", err, tail(p.logPath, 15))
	}
	return nil
}

// RestartWith restarts the agent (SIGTERM) with flags set to the given
// values (added when absent), and returns a function that restarts it
// with the flags it had.
func (p *AgentProcess) RestartWith(ctx context.Context, flags map[string]string) (restore func(context.Context) error, err error) {
	old := slices.Clone(p.args)
	for name, value := range flags {
		if i := slices.Index(p.args, "--"+name); i >= 0 && i+1 < len(p.args) {
			p.args[i+1] = value
		} else {
			// --name=value: a boolean flag takes no separate value.
			p.args = append(p.args, "--"+name+"="+value)
		}
	}
	if err := p.Restart(ctx, syscall.SIGTERM); err != nil {
		p.args = old
		return nil, err
	}
	return func(ctx context.Context) error {
		p.args = old
		return p.Restart(ctx, syscall.SIGTERM)
	}, nil
}

// Restart stops the agent with sig (SIGTERM: it shuts down; SIGKILL: it
// dies where it stands) and starts it again with the same flags, as a
// node's kubelet restarts the container.
func (p *AgentProcess) Restart(ctx context.Context, sig syscall.Signal) error {
	if p.cmd == nil || p.cmd.Process == nil {
		return errors.New("restarting the agent: it is not a process of this game day (a DaemonSet's pods are restarted by their kubelet)")
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.start(ctx)
}

// LogPath is the agent's log file.
func (p *AgentProcess) LogPath() string { return p.logPath }

// Said is the last n lines of the agent's log that hold text, empty when
// its log is not on this machine (kind: the pod's).
func (p *AgentProcess) Said(text string, n int) string {
	if p.logPath == "" {
		return ""
	}
	return tailMatching(p.logPath, text, n)
}

// API is the base URL of the agent's HTTP API (/findings, /webhooks,
// /metrics); for a DaemonSet's agents, the first one's.
func (p *AgentProcess) API() string { return p.apis[0] }

// Findings returns the agent's open and recently resolved findings (every
// agent's, for a DaemonSet).
func (p *AgentProcess) Findings(ctx context.Context) (open, resolved []AgentFinding, err error) {
	err = p.each(func(api string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/findings", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("reading agent findings: %w", err)
		}
		defer resp.Body.Close()
		var body struct {
			Open     []AgentFinding `json:"open"`
			Resolved []AgentFinding `json:"resolved"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("decoding agent findings: %w", err)
		}
		open, resolved = append(open, body.Open...), append(resolved, body.Resolved...)
		return nil
	})
	return open, resolved, err
}

// WaitForImpact polls until an open correlation finding of the webhook with
// the impact kind (and node, if not empty) exists, and returns it.
func (p *AgentProcess) WaitForImpact(ctx context.Context, webhook, kind, node string, timeout time.Duration) (AgentFinding, error) {
	return p.WaitForImpactOn(ctx, webhook, kind, node, "", timeout)
}

// WaitForImpactOn is WaitForImpact on one object ("Namespace team-a"; empty:
// any).
func (p *AgentProcess) WaitForImpactOn(ctx context.Context, webhook, kind, node, object string, timeout time.Duration) (AgentFinding, error) {
	var found AgentFinding
	err := wait.PollUntilContextTimeout(ctx, 25*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		open, _, err := p.Findings(ctx)
		if err != nil {
			return false, nil
		}
		for _, f := range open {
			if f.Webhook.Name == webhook && f.Impact != nil && f.Impact.Kind == kind && (node == "" || f.Impact.Node == node) &&
				(object == "" || f.Impact.Object == object) {
				found = f
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("no open %s impact of webhook %s (node %q, object %q) within %s", kind, webhook, node, object, timeout)
	}
	return found, nil
}

// WaitForFinding polls until an open finding of the webhook with the class
// exists, and returns it: the webhook's own finding, never one of what its
// failure breaks (an impact finding takes the webhook's class and the
// evidence of the API server's signal; WaitForImpact reads those). On
// timeout the error lists the open findings of the webhook it saw instead.
func (p *AgentProcess) WaitForFinding(ctx context.Context, webhook, class string, timeout time.Duration) (AgentFinding, error) {
	var found AgentFinding
	var others []string
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		open, _, err := p.Findings(ctx)
		if err != nil {
			return false, nil
		}
		others = others[:0]
		for _, f := range open {
			if f.Webhook.Name != webhook || f.Impact != nil {
				continue
			}
			if f.Class == class {
				found = f
				return true, nil
			}
			others = append(others, f.Class)
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("no open %s finding for webhook %s within %s (open for it: %v)", class, webhook, timeout, others)
	}
	return found, nil
}

// Metrics returns the agent's Prometheus scrape (every agent's, one after
// the other, for a DaemonSet).
func (p *AgentProcess) Metrics(ctx context.Context) (string, error) {
	var all strings.Builder
	err := p.each(func(api string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/metrics", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("scraping agent metrics: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("scraping agent metrics: %w", err)
		}
		all.Write(b)
		return nil
	})
	return all.String(), err
}

// tracedWebhook is what WaitForTraced reads of GET /webhooks.
type tracedWebhook struct {
	Ref struct {
		Name string `json:"name"`
	} `json:"ref"`
	Traced []string `json:"traced"`
}

// WaitForTraced polls the agent's /webhooks until it traces backend for the
// webhook in the kernel.
func (p *AgentProcess) WaitForTraced(ctx context.Context, webhook, backend string, timeout time.Duration) error {
	traced := func(ctx context.Context, api string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/webhooks", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ws []tracedWebhook
		if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
			return false
		}
		return slices.ContainsFunc(ws, func(w tracedWebhook) bool {
			return w.Ref.Name == webhook && slices.Contains(w.Traced, backend)
		})
	}
	err := wait.PollUntilContextTimeout(ctx, 25*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		return slices.ContainsFunc(p.apis, func(api string) bool { return traced(ctx, api) }), nil
	})
	if err != nil {
		return fmt.Errorf("the agent does not trace backend %s of webhook %s within %s", backend, webhook, timeout)
	}
	return nil
}

// WaitForResolved polls until the finding with id is resolved.
func (p *AgentProcess) WaitForResolved(ctx context.Context, id string, timeout time.Duration) (AgentFinding, error) {
	var found AgentFinding
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, resolved, err := p.Findings(ctx)
		if err != nil {
			return false, nil
		}
		for _, f := range resolved {
			if f.ID == id && f.Resolved != nil {
				found = f
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("finding %s not resolved within %s", id, timeout)
	}
	return found, nil
}

// Stop sends SIGTERM and waits (bounded) for the agent to exit.
func (p *AgentProcess) Stop() error {
	if p.cmd == nil || p.cmd.Process == nil { // a pod's agent (kind): the cluster goes with it
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	return tailMatching(path, "", n)
}

// tailMatching is the last n lines of the file at path that hold text.
func tailMatching(path, text string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.Contains(l, text) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
