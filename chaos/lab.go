//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/internal/jaeger"
)

// Lab is everything a game day runs against: a cluster from a Provider, a
// node for the scenarios' pods, a real Jaeger, and the hookscope agent as
// that node's agent.
type Lab struct {
	// Binary is the hookscope binary: the agent, and the CLI the game day
	// remediates with.
	Binary   string
	Provider Provider
	Client   kubernetes.Interface
	Node     string
	Jaeger   *jaeger.Server
	Agent    *AgentProcess
	Report   *Report
	Dir      string

	// stopCNI stops the stand-in CNI that DeployCNI starts and waits for it.
	stopCNI func()
}

// LabOptions say where the lab keeps its files and which agent binary it runs.
type LabOptions struct {
	Dir         string // work directory: logs, kubeconfig, cluster state
	AgentBinary string // empty: build ./cmd/hookscope into Dir
}

// AgentServiceName is the service.name of the agent's spans.
const AgentServiceName = "hookscope-agent"

// StartLab brings the lab up; on error it tears down what it started.
func StartLab(ctx context.Context, o LabOptions) (_ *Lab, err error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	l := &Lab{Dir: o.Dir, Node: "hookscope-node-0"}
	defer func() {
		if err != nil {
			l.Stop(context.Background())
		}
	}()

	bin := o.AgentBinary
	if bin == "" {
		if bin, err = buildAgent(ctx, o.Dir); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	l.Binary = bin
	switch provider := os.Getenv("PROVIDER"); provider {
	case "", "local":
		l.Provider = NewLocal("hookscope", filepath.Join(o.Dir, "cluster"))
	case "kind":
		// chaos.Kind makes a working cluster (TestKindCluster), but the
		// lab still runs webhook backends in network namespaces and the
		// agent as a process on this machine, which only a kwok cluster's
		// nodes can stand for.
		return nil, errors.New("PROVIDER=kind: the kind cluster is built (make docker-up kind-image; chaos.Kind), but the game day's webhook backends and agent do not run as pods yet: run it with PROVIDER=local (the default)")
	default:
		return nil, fmt.Errorf("PROVIDER=%s: the game day runs on local (kwok, the default) or kind", provider)
	}
	if err := l.Provider.Create(ctx); err != nil {
		return nil, err
	}
	l.Report = NewReport(l.Provider.Name())
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Provider.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("starting lab: loading kubeconfig: %w", err)
	}
	if l.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	if err := l.Provider.AddNode(ctx, l.Node); err != nil {
		return nil, err
	}
	if v, err := l.Client.Discovery().ServerVersion(); err == nil {
		l.Report.KubernetesVersion = v.GitVersion
	}
	fmt.Fprintf(os.Stderr, "lab: cluster %s with node %s ready in %s\n", l.Provider.Name(), l.Node, time.Since(start).Round(time.Millisecond))

	jbin, err := jaeger.Binary()
	if err != nil {
		return nil, err
	}
	if l.Jaeger, err = jaeger.Start(ctx, jbin, filepath.Join(o.Dir, "jaeger")); err != nil {
		return nil, err
	}
	l.Agent, err = StartAgent(ctx, AgentOptions{
		Binary:       bin,
		Kubeconfig:   l.Provider.Kubeconfig(),
		NodeName:     l.Node,
		OTLPEndpoint: l.Jaeger.OTLPGRPCEndpoint(),
		Dir:          o.Dir,
		// One agent: it wins the election and runs the cluster-wide checks.
		// HOOKSCOPE_AGENT_EXTRA_ARGS adds flags, e.g. to switch a detector
		// off and watch its scenarios fail.
		ExtraArgs: append([]string{"--lease-namespace", "default", "--apiserver-metrics-interval", "1s", "--probe-interval", "2s"},
			strings.Fields(os.Getenv("HOOKSCOPE_AGENT_EXTRA_ARGS"))...),
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "lab: jaeger and agent up in %s (agent log %s)\n", time.Since(start).Round(time.Millisecond), l.Agent.LogPath())
	return l, nil
}

// Stop stops the agent, Jaeger and the cluster, keeping their logs in Dir.
func (l *Lab) Stop(ctx context.Context) error {
	var errs []error
	if l.stopCNI != nil {
		l.stopCNI()
		l.stopCNI = nil
	}
	if l.Agent != nil {
		errs = append(errs, l.Agent.Stop())
	}
	if l.Jaeger != nil {
		errs = append(errs, l.Jaeger.Stop())
	}
	if l.Provider != nil {
		errs = append(errs, l.Provider.CollectLogs(filepath.Join(l.Dir, "logs")))
		errs = append(errs, l.Provider.Delete(ctx))
	}
	return errors.Join(errs...)
}

// Hookscope runs the hookscope CLI against the lab's cluster and returns
// its output.
func (l *Lab) Hookscope(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.Binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+l.Provider.Kubeconfig())
	cmd.Dir = l.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hookscope %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// buildAgent builds ./cmd/hookscope of this module into dir.
func buildAgent(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("building the agent: cannot find hookscope's go.mod (set HOOKSCOPE_BIN to a built hookscope binary)")
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "hookscope")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/hookscope")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the agent: %w\n%s", err, b)
	}
	return bin, nil
}
