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
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/internal/jaeger"
)

// Lab is everything a game day runs against: a cluster from a Provider, a
// node for the scenarios' pods, a real Jaeger, and the hookscope agent as
// that node's agent.
type Lab struct {
	// Binary is the agent's binary (the image's); CLI the hookscope CLI the
	// game day looks and remediates with.
	Binary   string
	CLI      string
	Provider Provider
	Client   kubernetes.Interface
	Node     string
	Jaeger   *jaeger.Server
	Agent    *AgentProcess
	Report   *Report
	Dir      string

	// JoiningNode is the node the blocked-CNI game day joins: it has no
	// aws-node pod until JoinNode. GuardNode joins the same way in the
	// guard's game day.
	JoiningNode, GuardNode string

	// stopCNI stops the stand-in CNI that DeployCNI starts and waits for it.
	stopCNI func()
	// kind: the API server's address for port-forwards, and those open.
	restConfig *rest.Config
	forwards   []*PortForward
}

// LabOptions say where the lab keeps its files and which binaries it runs.
type LabOptions struct {
	Dir         string // work directory: logs, kubeconfig, cluster state
	AgentBinary string // the agent, as the image ships it; empty: build ./cmd/hookscope-agent into Dir
	CLIBinary   string // the CLI; empty: build ./cmd/hookscope into Dir
}

// BinariesFromEnv are the binaries $HOOKSCOPE_AGENT_BIN and $HOOKSCOPE_BIN
// name (the CLI binary also runs `hookscope agent`: it stands in for the
// agent's when only it is named).
func BinariesFromEnv() (agent, cli string) {
	agent, cli = os.Getenv("HOOKSCOPE_AGENT_BIN"), os.Getenv("HOOKSCOPE_BIN")
	if agent == "" {
		agent = cli
	}
	return agent, cli
}

// AgentServiceName is the service.name of the agent's spans.
const AgentServiceName = "hookscope-agent"

// StartLab brings the lab up; on error it tears down what it started.
func StartLab(ctx context.Context, o LabOptions) (_ *Lab, err error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	l := &Lab{Dir: o.Dir, Node: "hookscope-node-0", JoiningNode: "hookscope-node-joining", GuardNode: "hookscope-node-joining-guard"}
	defer func() {
		if err != nil {
			l.Stop(context.Background())
		}
	}()

	if l.Binary, err = orBuild(ctx, o.AgentBinary, o.Dir, "hookscope-agent"); err != nil {
		return nil, err
	}
	if l.CLI, err = orBuild(ctx, o.CLIBinary, o.Dir, "hookscope"); err != nil {
		return nil, err
	}

	start := time.Now()
	if err := l.startCluster(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "lab: cluster %s with node %s ready in %s\n", l.Provider.Name(), l.Node, time.Since(start).Round(time.Millisecond))

	if k, ok := l.Provider.(*Kind); ok {
		if err := l.startKind(ctx, k); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "lab: jaeger and agent up as pods in %s\n", time.Since(start).Round(time.Millisecond))
		return l, nil
	}
	if err := l.startLocal(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "lab: jaeger and agent up in %s (agent log %s)\n", time.Since(start).Round(time.Millisecond), l.Agent.LogPath())
	return l, nil
}

// chooseProvider sets the lab's Provider from $PROVIDER: local (kwok, the
// default) or kind, whose workers' names replace the lab's node names.
func (l *Lab) chooseProvider() error {
	switch provider := os.Getenv("PROVIDER"); provider {
	case "", "local":
		l.Provider = NewLocal("hookscope", filepath.Join(l.Dir, "cluster"))
	case "kind":
		// A worker for the backends and the agent, and two that join
		// without aws-node: the blocked-CNI game day's and the guard's.
		k := NewKind("hookscope", filepath.Join(l.Dir, "cluster"), 3)
		k.Joining = 2
		l.Provider, l.Node, l.JoiningNode, l.GuardNode = k, k.WorkerNames()[0], k.WorkerNames()[1], k.WorkerNames()[2]
	default:
		return fmt.Errorf("PROVIDER=%s: the game day runs on local (kwok, the default) or kind", provider)
	}
	return nil
}

// startCluster creates the Provider's cluster, a client for it and the
// scenarios' node, and starts the Report with the cluster's version. Each
// part is set on l as soon as it exists, so Stop tears down what started.
func (l *Lab) startCluster(ctx context.Context) error {
	if err := l.chooseProvider(); err != nil {
		return err
	}
	if err := l.Provider.Create(ctx); err != nil {
		return err
	}
	l.Report = NewReport(l.Provider.Name())
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Provider.Kubeconfig())
	if err != nil {
		return fmt.Errorf("starting lab: loading kubeconfig: %w", err)
	}
	if l.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("starting lab: %w", err)
	}
	if err := l.Provider.AddNode(ctx, l.Node); err != nil {
		return err
	}
	if v, err := l.Client.Discovery().ServerVersion(); err == nil {
		l.Report.KubernetesVersion = v.GitVersion
	}
	return nil
}

// startLocal brings up Jaeger and the agent as processes on this machine
// (the local provider), the agent exporting its spans to that Jaeger.
func (l *Lab) startLocal(ctx context.Context) error {
	jbin, err := jaeger.Binary()
	if err != nil {
		return err
	}
	if l.Jaeger, err = jaeger.Start(ctx, jbin, filepath.Join(l.Dir, "jaeger")); err != nil {
		return err
	}
	l.Agent, err = StartAgent(ctx, AgentOptions{
		Binary:       l.Binary,
		Kubeconfig:   l.Provider.Kubeconfig(),
		NodeName:     l.Node,
		OTLPEndpoint: l.Jaeger.OTLPGRPCEndpoint(),
		Dir:          l.Dir,
		// One agent: it wins the election and runs the cluster-wide checks.
		// HOOKSCOPE_AGENT_EXTRA_ARGS adds flags, e.g. to switch a detector
		// off and watch its scenarios fail.
		ExtraArgs: append(append([]string{"--lease-namespace", "default", "--apiserver-metrics-interval", "1s", "--probe-interval", "2s",
			"--state-file", filepath.Join(l.Dir, "findings.json")}, guardArgs...),
			strings.Fields(os.Getenv("HOOKSCOPE_AGENT_EXTRA_ARGS"))...),
	})
	return err
}

// GuardedConfiguration is the one webhook configuration the lab's guard
// may change (its game day's, which also opts in by annotation); the
// guard acts after guardGrace and puts it back guardRevertAfter after it
// is healthy, in the game day.
const (
	GuardedConfiguration = "guarded-aws-node"
	guardGrace           = "3s"
	guardRevertAfter     = "5s"
)

// guardArgs turn the local agent's guard on, on the game day's terms.
var guardArgs = []string{"--guard", "--guard-grace=" + guardGrace, "--guard-revert-after=" + guardRevertAfter, "--guard-window=1m"}

// Stop stops the agent, Jaeger and the cluster, keeping their logs in Dir.
func (l *Lab) Stop(ctx context.Context) error {
	var errs []error
	if l.stopCNI != nil {
		l.stopCNI()
		l.stopCNI = nil
	}
	for _, pf := range l.forwards {
		pf.Close()
	}
	l.forwards = nil
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
	cmd := exec.CommandContext(ctx, l.CLI, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+l.Provider.Kubeconfig())
	cmd.Dir = l.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("hookscope %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// orBuild is bin, or when empty ./cmd/NAME of this module built into dir.
func orBuild(ctx context.Context, bin, dir, name string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", fmt.Errorf("building %s: %w (or set HOOKSCOPE_BIN and HOOKSCOPE_AGENT_BIN to built binaries)", name, err)
	}
	bin = filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static: kind runs the agent in a FROM-scratch image
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", name, err, b)
	}
	return bin, nil
}
