package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
)

// Kind is a cluster made by kind (Kubernetes in Docker): real kubelets, a
// real CNI (aws-node, chaos/kind/awsnode, in the role kindnetd has in kind),
// pods that run. It needs a container runtime and a
// kind node image; a machine with neither gets one line saying so from
// Create. Its nodes are fixed when the cluster is created, so it makes the
// workers the game day will use up front, and AddNode only checks one of
// them by name (WorkerNames).
//
// As with Local, the API server calls webhooks at their endpoint IPs
// (enable-aggregator-routing, as EKS does).
type Kind struct {
	name    string
	workDir string
	// Image is the node image (kindest/node:<version> or one built here);
	// empty uses kind's default for its version.
	Image   string
	workers int
	// Joining is how many of the workers (the last ones) have no aws-node:
	// they stay NotReady until AddNodeWithLabels gives them CNILabel, as
	// a node joining an EKS cluster waits for its aws-node pod.
	Joining int

	provider *cluster.Provider
}

var _ Provider = (*Kind)(nil)

// DefaultKindImage is the node image make kind-image builds offline; kind's
// own default cannot be pulled here.
const DefaultKindImage = "hookscope.local/kind-node:v1.34.4"

// kindWaitReady bounds Create's wait for the control plane.
const kindWaitReady = 3 * time.Minute

// NewKind returns a kind cluster named name with that many workers, whose
// kubeconfig and logs live under workDir. HOOKSCOPE_KIND_IMAGE names the
// node image (default DefaultKindImage).
func NewKind(name, workDir string, workers int) *Kind {
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	image := os.Getenv("HOOKSCOPE_KIND_IMAGE")
	if image == "" {
		image = DefaultKindImage
	}
	return &Kind{name: name, workDir: workDir, workers: workers, Image: image}
}

// Name returns "kind".
func (k *Kind) Name() string { return "kind" }

// Kubeconfig is where Create writes the admin kubeconfig.
func (k *Kind) Kubeconfig() string { return filepath.Join(k.workDir, "kubeconfig") }

// APIServerLog is the kube-apiserver's log, read from the control plane
// node each time it is asked for (the game day reads it at its end) and
// written to the work directory as klog lines, without the container
// runtime's prefix ("" when it cannot be read).
func (k *Kind) APIServerLog() string {
	raw, err := exec.Command("docker", "exec", k.name+"-control-plane", "sh", "-c", "cat /var/log/containers/kube-apiserver-*.log").Output()
	if err != nil || len(raw) == 0 {
		return ""
	}
	var out bytes.Buffer
	for _, line := range strings.Split(string(raw), "\n") {
		// CRI: TIMESTAMP STREAM P|F MESSAGE
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out.WriteString(f[3])
			out.WriteByte('\n')
		}
	}
	path := filepath.Join(k.workDir, "kube-apiserver.log")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return ""
	}
	return path
}

// Config is the kind cluster configuration Create uses: one control
// plane whose API server routes to endpoint IPs, and the workers; kind's
// own CNI is off (aws-node is the CNI, deployed by Create on the nodes
// labelled CNILabel=CNIName) and kube-proxy runs in nftables mode.
func (k *Kind) Config() *v1alpha4.Cluster {
	cni := map[string]string{CNILabel: CNIName}
	cfg := &v1alpha4.Cluster{
		TypeMeta:   v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Networking: v1alpha4.Networking{DisableDefaultCNI: true, KubeProxyMode: v1alpha4.NFTablesProxyMode},
		Nodes: []v1alpha4.Node{{
			Role:   v1alpha4.ControlPlaneRole,
			Image:  k.Image,
			Labels: cni,
			KubeadmConfigPatches: []string{`kind: ClusterConfiguration
apiServer:
  extraArgs:
    enable-aggregator-routing: "true"
`},
		}},
	}
	for i := range k.workers {
		labels := cni
		if i >= k.workers-k.Joining {
			labels = nil
		}
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: k.Image, Labels: labels})
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg
}

// Create makes the cluster and its pod network (aws-node, built from
// chaos/kind/awsnode and loaded into the nodes) and returns once every node
// is Ready, or says in one line why it cannot: no container runtime, or no
// node image (none can be pulled offline: make kind-image builds one).
func (k *Kind) Create(ctx context.Context) error {
	runtime, err := cluster.DetectNodeProvider()
	if err != nil {
		return errors.New("kind provider: no container runtime (docker, podman or nerdctl) on this machine: install Docker and a kind node image, or run the game day with PROVIDER=local")
	}
	if exec.CommandContext(ctx, "docker", "info").Run() != nil {
		return errors.New("kind provider: no container runtime answers (docker info fails): make docker-up starts Docker, or run the game day with PROVIDER=local")
	}
	if k.Image != "" && exec.CommandContext(ctx, "docker", "image", "inspect", k.Image).Run() != nil {
		return fmt.Errorf("kind provider: no node image %s in Docker (make kind-image builds it offline), or run the game day with PROVIDER=local", k.Image)
	}
	if err := os.MkdirAll(k.workDir, 0o755); err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	k.provider = cluster.NewProvider(runtime)
	// A cluster of this name is the game day's own, left by a run that was
	// killed before its cleanup: it would make Create fail.
	if names, err := k.provider.List(); err == nil && slices.Contains(names, k.name) {
		fmt.Fprintf(os.Stderr, "lab: deleting kind cluster %s, left by an earlier run\n", k.name)
		if err := k.provider.Delete(k.name, k.Kubeconfig()); err != nil {
			return fmt.Errorf("kind provider: deleting cluster %s left by an earlier run: %s", k.name, oneLine(err))
		}
	}
	done := make(chan error, 1)
	go func() {
		// No wait for Ready here: no node is Ready before aws-node runs.
		done <- k.provider.Create(k.name,
			cluster.CreateWithV1Alpha4Config(k.Config()),
			cluster.CreateWithKubeconfigPath(k.Kubeconfig()),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false))
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("kind provider: creating cluster %s: %s (kind needs a running container runtime and a kind node image, HOOKSCOPE_KIND_IMAGE; none can be pulled offline; PROVIDER=local runs without)", k.name, oneLine(err))
	}
	if err := k.podNetwork(ctx); err != nil {
		return fmt.Errorf("kind provider: cluster %s: %w", k.name, err)
	}
	return nil
}

// podNetwork deploys aws-node and waits until every node is Ready.
func (k *Kind) podNetwork(ctx context.Context) error {
	if err := buildCNIImage(ctx, k.workDir); err != nil {
		return err
	}
	names, err := k.Nodes()
	if err != nil {
		return err
	}
	if err := loadImage(ctx, kindCNIImage, names); err != nil {
		return err
	}
	client, err := k.client()
	if err != nil {
		return err
	}
	if err := routePodCIDRs(ctx, client); err != nil {
		return err
	}
	if err := deployKindCNI(ctx, client); err != nil {
		return err
	}
	joining := k.WorkerNames()[k.workers-k.Joining:]
	names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(joining, n) })
	return waitNodesReady(ctx, client, names, kindWaitReady)
}

// restConfig is the admin kubeconfig Create wrote, loaded.
func (k *Kind) restConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", k.Kubeconfig(), err)
	}
	return cfg, nil
}

// client is a clientset for the cluster.
func (k *Kind) client() (kubernetes.Interface, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Nodes are the names of the cluster's nodes (its containers).
func (k *Kind) Nodes() ([]string, error) {
	nodes, err := k.provider.ListNodes(k.name)
	if err != nil {
		return nil, fmt.Errorf("listing the nodes of %s: %w", k.name, err)
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.String())
	}
	return names, nil
}

// AddNodeWithLabels gives a worker kind made the labels (CNILabel: its
// aws-node pod is created) and, if waitReady, waits until it is Ready.
func (k *Kind) AddNodeWithLabels(ctx context.Context, name string, labels map[string]string, waitReady bool) error {
	if err := k.AddNode(ctx, name); err != nil {
		return err
	}
	client, err := k.client()
	if err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kind provider: %w", err)
	}
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	maps.Copy(node.Labels, labels)
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kind provider: labelling node %s: %w", name, err)
	}
	if waitReady {
		return waitNodesReady(ctx, client, []string{name}, kindWaitReady)
	}
	return nil
}

// AddNode returns once the named worker exists: kind makes every worker
// when it creates the cluster, and names them itself (WorkerNames).
func (k *Kind) AddNode(_ context.Context, name string) error {
	if !slices.Contains(k.WorkerNames(), name) {
		return fmt.Errorf("kind provider: no worker %q: kind makes its nodes with the cluster (workers: %s)", name, strings.Join(k.WorkerNames(), ", "))
	}
	return nil
}

// WorkerNames are kind's names for the workers: <cluster>-worker,
// <cluster>-worker2, ...
func (k *Kind) WorkerNames() []string {
	out := make([]string, 0, k.workers)
	for i := range k.workers {
		n := k.name + "-worker"
		if i > 0 {
			n += fmt.Sprint(i + 1)
		}
		out = append(out, n)
	}
	return out
}

// CollectLogs exports every node's logs (the control plane's included).
func (k *Kind) CollectLogs(dir string) error {
	if k.provider == nil {
		return nil
	}
	if err := k.provider.CollectLogs(k.name, dir); err != nil {
		return fmt.Errorf("kind provider: collecting logs: %s", oneLine(err))
	}
	return nil
}

// Delete deletes the cluster; deleting one that is not there is no error.
func (k *Kind) Delete(context.Context) error {
	if k.provider == nil {
		return nil
	}
	if err := k.provider.Delete(k.name, k.Kubeconfig()); err != nil {
		return fmt.Errorf("kind provider: deleting cluster %s: %s", k.name, oneLine(err))
	}
	return nil
}

// oneLine keeps an error's first line: kind's errors carry stacks and
// command output.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
