//go:build linux

package chaos

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/internal/podnet"
)

const (
	// readyTimeout bounds Create's wait for /readyz and the default
	// ServiceAccount; kwokctl itself returns in about 2 s.
	readyTimeout = 60 * time.Second
	// nodeReadyTimeout bounds AddNode's wait for the kwok controller to
	// report the node Ready.
	nodeReadyTimeout = 60 * time.Second
	// exitTimeout bounds Delete's wait for the components to exit.
	exitTimeout = 10 * time.Second
	// pollInterval is how often the waits ask again.
	pollInterval = 200 * time.Millisecond

	// kwokNodeAnnotation marks a node as kwok's to simulate. The binary
	// runtime's controller manages all nodes, but kwokctl's kind runtime
	// selects on this annotation, so nodes carry it either way.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
)

// clusterSeq makes cluster names unique within a process.
var clusterSeq atomic.Uint32

// kwokStages is the kwok controller's lifecycle configuration for every Local
// cluster: kwok Stage resources, one or more per file (see kwok/README.md).
// kwokctl drops all of its default Stages, node and pod alike, as soon as its
// configuration holds a single Stage, so the directory carries kwok v0.8.0's
// defaults (node-initialize, node-heartbeat-with-lease, pod-ready,
// pod-complete, pod-delete) next to hookscope's own node-cni.yaml. The
// defaults are unchanged except that the two node Stages skip nodes labelled
// hookscope.dev/cni=aws-node, whose lifecycle node-cni.yaml models.
//
//go:embed kwok/*.yaml
var kwokStages embed.FS

// Local is a cluster on this machine made by kwokctl's binary runtime: real
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler processes
// plus the kwok controller, which simulates the nodes and their pods. Nothing
// runs in the pods; the API server is real, so admission webhooks are called
// exactly as in a production cluster.
//
// The kwok controller plays the nodes' lifecycle from kwok Stage resources
// (kwokStages): a node becomes Ready at once, as with kwok's defaults, unless
// it is labelled hookscope.dev/cni=aws-node; such a node models an EKS node
// whose VPC CNI has not started and stays NotReady (NetworkPluginNotReady,
// NetworkUnavailable=True) until it is also labelled
// hookscope.dev/cni-ready=true, which Lab.DeployCNI does while an aws-node
// pod runs on it.
//
// The API server runs with --enable-aggregator-routing=true, so it calls a
// webhook at the endpoint IPs of its Service, as EKS does, rather than at the
// ClusterIP. Pod and Service IPs both come from 10.0.0.0/16, which Create
// routes to "unreachable" so no call ever leaves the machine.
//
// A Local is not safe for concurrent use.
type Local struct {
	name    string // kwokctl cluster name, unique per process
	workDir string
	kwokDir string // KWOK_WORKDIR: kwokctl's state, under workDir
}

var _ Provider = (*Local)(nil)

// NewLocal returns a Local cluster whose files (kwokctl state, component
// logs, kubeconfig, kwokctl's output) all live under workDir. The kwokctl
// cluster is named name-<pid>-<n>, so parallel test processes never collide;
// name should be a short DNS label such as "hookscope".
func NewLocal(name, workDir string) *Local {
	// Absolute, because Delete recognises the components by the path of
	// their binaries under the cluster directory.
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	return &Local{
		name:    fmt.Sprintf("%s-%d-%d", name, os.Getpid(), clusterSeq.Add(1)),
		workDir: workDir,
		kwokDir: filepath.Join(workDir, "kwok"),
	}
}

// Name returns "local".
func (l *Local) Name() string { return "local" }

// Kubeconfig returns the path of the admin kubeconfig kwokctl writes.
func (l *Local) Kubeconfig() string { return filepath.Join(l.workDir, "kubeconfig") }

// APIServerLog returns the path of the kube-apiserver log (klog text, v=0).
// It lives in kwokctl's cluster directory, which Delete removes: call
// CollectLogs first to keep it.
func (l *Local) APIServerLog() string {
	return filepath.Join(l.clusterDir(), "logs", "kube-apiserver.log")
}

// clusterDir is kwokctl's directory for this cluster: pki, etcd data, pids,
// logs and the components' configuration.
func (l *Local) clusterDir() string { return filepath.Join(l.kwokDir, "clusters", l.name) }

// kwokctlLog is where kwokctl's own output goes.
func (l *Local) kwokctlLog() string { return filepath.Join(l.workDir, "kwokctl.log") }

// stagesConfig is the multi-document kwokctl configuration Create writes from
// kwokStages and passes with --config.
func (l *Local) stagesConfig() string { return filepath.Join(l.workDir, "kwok-stages.yaml") }

// writeKwokStages writes every Stage in kwokStages, in file name order, into
// one multi-document YAML file at path.
func writeKwokStages(path string) error {
	names, err := fs.Glob(kwokStages, "kwok/*.yaml")
	if err != nil {
		return fmt.Errorf("writing kwok stages: %w", err)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for i, name := range names {
		doc, err := kwokStages.ReadFile(name)
		if err != nil {
			return fmt.Errorf("writing kwok stages: %w", err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(doc)
		if !bytes.HasSuffix(doc, []byte("\n")) {
			buf.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing kwok stages: %w", err)
	}
	return nil
}

// Create installs the network guard, starts the cluster with kwokStages as
// the kwok controller's node and pod lifecycle, and waits until the
// API server's /readyz is ok and the default ServiceAccount exists (so pods
// can be created). If the cluster does not come up, Create copies its logs to
// <workDir>/logs and deletes it.
func (l *Local) Create(ctx context.Context) error {
	tools, err := ToolsDir()
	if err != nil {
		return fmt.Errorf("creating local cluster: %w", err)
	}
	// Before anything can be given a 10.0.x.y address: an unreachable route
	// makes a call to one fail at once instead of leaving the machine.
	if err := podnet.Guard(); err != nil {
		return fmt.Errorf("creating local cluster: installing network guard: %w", err)
	}
	if err := os.MkdirAll(l.workDir, 0o755); err != nil {
		return fmt.Errorf("creating local cluster: %w", err)
	}
	if err := writeKwokStages(l.stagesConfig()); err != nil {
		return fmt.Errorf("creating local cluster: %w", err)
	}

	bin := func(tool string) string { return filepath.Join(tools, tool) }
	args := []string{
		"create", "cluster",
		"--name", l.name,
		"--runtime", "binary",
		"--kubeconfig", l.Kubeconfig(),
		// The kwok controller's node and pod lifecycle (kwokStages).
		"--config", l.stagesConfig(),
		// Every component's binary, or kwokctl downloads it.
		"--etcd-binary", bin("etcd"),
		"--kube-apiserver-binary", bin("kube-apiserver"),
		"--kube-controller-manager-binary", bin("kube-controller-manager"),
		"--kube-scheduler-binary", bin("kube-scheduler"),
		"--kwok-controller-binary", bin("kwok"),
		"--extra-args", "kube-apiserver=enable-aggregator-routing=true",
		// One of each: they need no Lease, and a controller-manager that
		// loses one (an API server outage longer than its renew deadline)
		// exits, and kwokctl does not restart it.
		"--extra-args", "kube-controller-manager=leader-elect=false",
		"--extra-args", "kube-scheduler=leader-elect=false",
	}
	if err := l.kwokctl(ctx, tools, args...); err != nil {
		err = fmt.Errorf("creating local cluster %s: %w", l.name, err)
		return l.abandon(err)
	}
	if err := l.waitReady(ctx); err != nil {
		err = fmt.Errorf("creating local cluster %s: %w", l.name, err)
		return l.abandon(err)
	}
	return nil
}

// abandon keeps the logs of a cluster that failed to come up, deletes it and
// returns err with the place of the logs.
func (l *Local) abandon(err error) error {
	logs := filepath.Join(l.workDir, "logs")
	if cerr := l.CollectLogs(logs); cerr != nil {
		err = errors.Join(err, cerr)
	} else {
		err = fmt.Errorf("%w (component logs in %s)", err, logs)
	}
	// The caller's context may be what ran out; cleanup gets its own bound.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if derr := l.Delete(ctx); derr != nil {
		err = errors.Join(err, derr)
	}
	return err
}

// waitReady polls until /readyz answers ok and the default ServiceAccount,
// which the controller manager creates, exists.
func (l *Local) waitReady(ctx context.Context) error {
	client, err := l.Client()
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, pollInterval, readyTimeout, true, func(ctx context.Context) (bool, error) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			last = fmt.Errorf("/readyz: %w", err)
			return false, nil
		}
		if string(body) != "ok" {
			last = fmt.Errorf("/readyz: %q", body)
			return false, nil
		}
		if _, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			last = fmt.Errorf("default ServiceAccount: %w", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server: %w (last: %v)", err, last)
	}
	return nil
}

// Client returns a clientset for the cluster, built from Kubeconfig.
func (l *Local) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", l.Kubeconfig(), err)
	}
	// Scenarios create objects in bursts; client-go's default of 5 QPS
	// would make the harness, not the cluster, the bottleneck.
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building client for %s: %w", l.Kubeconfig(), err)
	}
	return client, nil
}

// AddNode creates a node the kwok controller simulates and waits until it is
// Ready. Pods bound to it are run (in simulation) and get IPs from
// 10.0.N.0/24.
func (l *Local) AddNode(ctx context.Context, name string) error {
	return l.AddNodeWithLabels(ctx, name, nil, true)
}

// AddNodeWithLabels creates a node the kwok controller simulates, shaped as
// AddNode's, with labels added to (or overriding) its usual ones. If
// waitReady is set it waits, as AddNode does, until the node is Ready;
// otherwise it returns once the node exists, which is what a node that is
// not meant to become Ready yet needs: one labelled
// hookscope.dev/cni=aws-node stays NotReady until its CNI pod runs
// (kwok/node-cni.yaml).
func (l *Local) AddNodeWithLabels(ctx context.Context, name string, labels map[string]string, waitReady bool) error {
	client, err := l.Client()
	if err != nil {
		return fmt.Errorf("adding node %s: %w", name, err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	nodeLabels := map[string]string{
		"type":                   "kwok",
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	maps.Copy(nodeLabels, labels)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels:      nodeLabels,
		},
		// The scheduler places pods by allocatable; kwok leaves it as given.
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("adding node %s: %w", name, err)
	}
	if !waitReady {
		return nil
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, pollInterval, nodeReadyTimeout, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = "no Ready condition"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready=%s (%s)", c.Status, c.Reason)
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("adding node %s: waiting for Ready: %w (last: %s; kwok controller log in %s)",
			name, err, last, filepath.Join(l.clusterDir(), "logs", "kwok-controller.log"))
	}
	return nil
}

// CollectLogs copies the components' logs, their configuration as kwokctl
// generated it (kwok.yaml) and kwokctl's own output into dir.
func (l *Local) CollectLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("collecting logs: %w", err)
	}
	srcs, err := filepath.Glob(filepath.Join(l.clusterDir(), "logs", "*.log"))
	if err != nil {
		return fmt.Errorf("collecting logs: %w", err)
	}
	srcs = append(srcs, filepath.Join(l.clusterDir(), "kwok.yaml"), l.kwokctlLog())
	var errs []error
	for _, src := range srcs {
		if err := copyFile(src, filepath.Join(dir, filepath.Base(src))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collecting logs into %s: %w", dir, err)
	}
	return nil
}

// Delete stops the components with `kwokctl delete cluster`, waits for them
// to exit, and removes whatever is left of the cluster's directory. Deleting
// a cluster that does not exist succeeds. The network guard stays: other
// processes may rely on it.
func (l *Local) Delete(ctx context.Context) error {
	if _, err := os.Stat(l.clusterDir()); errors.Is(err, os.ErrNotExist) {
		return nil // never created, or already deleted
	}
	pids := l.componentPIDs()
	var errs []error
	tools, err := ToolsDir()
	if err == nil {
		err = l.kwokctl(ctx, tools, "delete", "cluster", "--name", l.name, "--kubeconfig", l.Kubeconfig())
	}
	if err != nil {
		errs = append(errs, err)
	}
	// kwokctl kills the components without waiting for them; wait here so
	// their ports are free when Delete returns. If kwokctl failed, stop
	// them ourselves.
	if len(pids) > 0 {
		if err := l.waitExit(ctx, pids, err != nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.removeAPIServerCgroup(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.clusterDir()); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting local cluster %s: %w", l.name, err)
	}
	return nil
}

// componentPIDs reads the pid files kwokctl keeps for the components.
func (l *Local) componentPIDs() []int {
	files, _ := filepath.Glob(filepath.Join(l.clusterDir(), "pids", "*.pid"))
	var pids []int
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ours reports whether pid is still a live (not zombie) component of this
// cluster: its command line runs a binary from the cluster's directory, so a
// recycled pid is never mistaken for one.
func (l *Local) ours(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.HasPrefix(cmdline, []byte(l.clusterDir()+string(filepath.Separator)))
}

// waitExit waits until none of pids is a live component of this cluster,
// first killing them if kill is set.
func (l *Local) waitExit(ctx context.Context, pids []int, kill bool) error {
	if kill {
		for _, pid := range pids {
			if l.ours(pid) {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	var alive []int
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, exitTimeout, true, func(context.Context) (bool, error) {
		alive = alive[:0]
		for _, pid := range pids {
			if l.ours(pid) {
				alive = append(alive, pid)
			}
		}
		return len(alive) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for components to exit (still running: %v): %w", alive, err)
	}
	return nil
}

// kwokctl runs kwokctl with its state under l.kwokDir, appending its output
// to l.kwokctlLog(), which the error names.
func (l *Local) kwokctl(ctx context.Context, tools string, args ...string) error {
	logPath := l.kwokctlLog()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening kwokctl log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "# %s kwokctl %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))

	cmd := exec.CommandContext(ctx, filepath.Join(tools, "kwokctl"), args...)
	// KWOK_WORKDIR keeps the cluster's files under workDir and makes
	// kwokctl ignore the user's ~/.kwok/kwok.yaml.
	cmd.Env = append(os.Environ(), "KWOK_WORKDIR="+l.kwokDir)
	// A file, not a pipe: the components kwokctl forks must not hold
	// Wait open.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %w (output in %s)", strings.Join(args[:2], " "), err, logPath)
	}
	return nil
}

// copyFile copies src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// PauseAPIServer freezes the kube-apiserver (SIGSTOP) for d, then lets it
// go on (SIGCONT): its clients' requests hang, as in a control plane
// outage or a partition from it, and nothing it holds is lost. The agent's
// Lease cannot be renewed meanwhile.
func (l *Local) PauseAPIServer(ctx context.Context, d time.Duration) error {
	pid, err := l.apiServerPID()
	if err != nil {
		return fmt.Errorf("pausing the API server: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pausing the API server: %w", err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	return nil
}

// apiServerPID is the kube-apiserver's process, checked to be this
// cluster's.
func (l *Local) apiServerPID() (int, error) {
	raw, err := os.ReadFile(filepath.Join(l.clusterDir(), "pids", "kube-apiserver.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || !l.ours(pid) {
		return 0, fmt.Errorf("pid file %q names no component of this cluster", raw)
	}
	return pid, nil
}
