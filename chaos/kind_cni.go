package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// On kind the CNI is real: chaos/kind/awsnode, deployed as the DaemonSet
// kube-system/aws-node on the nodes labelled CNILabel=CNIName, writes the
// node's CNI configuration, and kubelet keeps a node NotReady ("cni plugin
// not initialized") until it has. No stand-in, no node Stages.

// kindCNIImage is the aws-node image Kind builds and loads into its nodes
// (nothing pulls it: imagePullPolicy Never).
const kindCNIImage = "hookscope.local/aws-node:kind"

// buildCNIImage builds chaos/kind/awsnode into a FROM-scratch image tagged
// kindCNIImage in the local Docker daemon.
func buildCNIImage(ctx context.Context, workDir string) error {
	b, err := goBinary(ctx, workDir, "./chaos/kind/awsnode")
	if err != nil {
		return err
	}
	return scratchImage(ctx, kindCNIImage, []string{"/aws-node"}, file{"aws-node", 0o755, b})
}

// file is one file of a FROM-scratch image.
type file struct {
	name string
	mode int64
	data []byte
}

// scratchImage imports files as a one-layer image ref with entrypoint.
func scratchImage(ctx context.Context, ref string, entrypoint []string, files ...file) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	quoted := make([]string, len(entrypoint))
	for i, e := range entrypoint {
		quoted[i] = `"` + e + `"`
	}
	imp := exec.CommandContext(ctx, "docker", "import", "-c", "ENTRYPOINT ["+strings.Join(quoted, ",")+"]", "-", ref)
	imp.Stdin = &layer
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("importing image %s: %w: %s", ref, err, out)
	}
	return nil
}

// goBinary builds pkg of this module, static, and returns its bytes.
func goBinary(ctx context.Context, dir, pkg string) ([]byte, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// loadImage copies a Docker image into the containerd of each node, as
// `kind load docker-image` does.
func loadImage(ctx context.Context, image string, nodes []string) error {
	for _, n := range nodes {
		save := exec.CommandContext(ctx, "docker", "save", image)
		load := exec.CommandContext(ctx, "docker", "exec", "-i", n, "ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "--digests", "-")
		pipe, err := save.StdoutPipe()
		if err != nil {
			return err
		}
		load.Stdin = pipe
		var stderr bytes.Buffer
		load.Stderr = &stderr
		if err := save.Start(); err != nil {
			return fmt.Errorf("saving image %s: %w", image, err)
		}
		if err := load.Run(); err != nil {
			_ = save.Wait()
			return fmt.Errorf("loading image %s into node %s: %w: %s", image, n, err, strings.TrimSpace(stderr.String()))
		}
		if err := save.Wait(); err != nil {
			return fmt.Errorf("saving image %s: %w", image, err)
		}
	}
	return nil
}

// deployKindCNI creates aws-node's ServiceAccount (it may list Nodes, no
// more) and its DaemonSet.
func deployKindCNI(ctx context.Context, c kubernetes.Interface) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: CNIName, Namespace: CNINamespace}}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "hookscope-" + CNIName},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hookscope-" + CNIName},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: CNIName, Namespace: CNINamespace}},
	}
	// kwok's aws-node, made real: its own image, node name, routes and the
	// node's CNI configuration directory.
	ds := cniDaemonSet()
	spec := &ds.Spec.Template.Spec
	spec.ServiceAccountName = CNIName
	spec.Containers[0].Image = kindCNIImage
	spec.Containers[0].ImagePullPolicy = corev1.PullNever
	spec.Containers[0].Env = []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
		Drop: []corev1.Capability{"ALL"},
		// Routes to the other nodes' pod CIDRs.
		Add: []corev1.Capability{"NET_ADMIN"},
	}}
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cni-conf", MountPath: "/etc/cni/net.d"}}
	spec.Volumes = []corev1.Volume{{Name: "cni-conf", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: "/etc/cni/net.d", Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}}}
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("deploying the CNI: creating %s: %w", what, err)
		}
		return nil
	}
	_, err := c.CoreV1().ServiceAccounts(CNINamespace).Create(ctx, sa, metav1.CreateOptions{})
	if err := create("ServiceAccount "+CNIName, err); err != nil {
		return err
	}
	_, err = c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	if err := create("ClusterRole "+role.Name, err); err != nil {
		return err
	}
	_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	if err := create("ClusterRoleBinding "+binding.Name, err); err != nil {
		return err
	}
	_, err = c.AppsV1().DaemonSets(CNINamespace).Create(ctx, ds, metav1.CreateOptions{})
	return create("DaemonSet "+CNINamespace+"/"+CNIName, err)
}

// routePodCIDRs routes, on every node, each other node's pod CIDR to that
// node's address, as EKS's VPC routes pod IPs whether or not a node's own
// aws-node runs: a joining node whose aws-node pod is blocked has no pod
// network of its own, but its host-network pods (hookscope's agent among
// them) still reach the cluster's Services and pods. aws-node keeps the
// routes of nodes that join later.
func routePodCIDRs(ctx context.Context, c kubernetes.Interface) error {
	var nodes *corev1.NodeList
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if nodes, err = c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			return false, nil
		}
		for _, n := range nodes.Items {
			if n.Spec.PodCIDR == "" || internalIP(n) == "" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("routing pod CIDRs: nodes without a pod CIDR or address: %w", err)
	}
	for _, on := range nodes.Items {
		for _, to := range nodes.Items {
			if on.Name == to.Name {
				continue
			}
			cmd := exec.CommandContext(ctx, "docker", "exec", on.Name, "ip", "route", "replace", to.Spec.PodCIDR, "via", internalIP(to))
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("routing %s via %s on %s: %w: %s", to.Spec.PodCIDR, to.Name, on.Name, err, strings.TrimSpace(string(out)))
			}
		}
	}
	return nil
}

func internalIP(n corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// waitNodesReady waits until each named node is Ready.
func waitNodesReady(ctx context.Context, c kubernetes.Interface, names []string, timeout time.Duration) error {
	var notReady []string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		notReady = notReady[:0]
		for _, n := range names {
			node, err := c.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil || !nodeReady(node) {
				notReady = append(notReady, n)
			}
		}
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not Ready within %s: %s", timeout, strings.Join(notReady, ", "))
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// moduleRoot is the directory of hookscope's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cannot find hookscope's go.mod (run from its source tree)")
	}
	return filepath.Dir(gomod), nil
}
