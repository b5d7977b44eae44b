package impact

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// eksNode is a node as an EKS managed node group's kubelet reports it:
// the labels, conditions, addresses and images the API server lists.
func eksNode(i int, ready corev1.ConditionStatus) *corev1.Node {
	name := fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i/250, i%250)
	since := metav1.NewTime(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: since, LastTransitionTime: since}
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("6f1c2d3e-0000-4000-8000-%012d", i)), ResourceVersion: "123456789",
			CreationTimestamp: since,
			Annotations: map[string]string{"alpha.kubernetes.io/provided-node-ip": "10.0.1.2", "node.alpha.kubernetes.io/ttl": "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
			Labels: map[string]string{
				"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "m6i.large", "beta.kubernetes.io/os": "linux",
				"eks.amazonaws.com/capacityType": "ON_DEMAND", "eks.amazonaws.com/nodegroup": "general-2026112",
				"eks.amazonaws.com/nodegroup-image": "ami-0a1b2c3d4e5f60718", "eks.amazonaws.com/sourceLaunchTemplateId": "lt-0a1b2c3d4e5f60718",
				"eks.amazonaws.com/sourceLaunchTemplateVersion": "3", "failure-domain.beta.kubernetes.io/region": "eu-west-1",
				"failure-domain.beta.kubernetes.io/zone": "eu-west-1a", "k8s.io/cloud-provider-aws": "3f6d1e0c5b2a49c8d7e6f5a4b3c2d1e0",
				"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
				"node.kubernetes.io/instance-type": "m6i.large", "topology.ebs.csi.aws.com/zone": "eu-west-1a",
				"topology.k8s.aws/zone-id": "euw1-az1", "topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": "eu-west-1a",
			},
		},
		Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/i-0a1b2c3d4e5f60718"},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("7834620Ki"), corev1.ResourcePods: resource.MustParse("29")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1930m"), corev1.ResourceMemory: resource.MustParse("7146492Ki"), corev1.ResourcePods: resource.MustParse("29")},
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond(corev1.NodeReady, ready, "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"),
			},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.1.2"}, {Type: corev1.NodeHostName, Address: name},
				{Type: corev1.NodeInternalDNS, Address: name}},
			NodeInfo: corev1.NodeSystemInfo{KernelVersion: "6.1.158-178.288.amzn2023.x86_64", OSImage: "Amazon Linux 2023.9.20251117",
				ContainerRuntimeVersion: "containerd://1.7.27", KubeletVersion: "v1.34.1-eks-113cf36", Architecture: "amd64", OperatingSystem: "linux"},
		},
	}
	for j := range 12 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/image-%d@sha256:%064d", j, j), fmt.Sprintf("602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/image-%d:v1.%d.0", j, j)},
			SizeBytes: 40_000_000})
	}
	return n
}

// TestSlimNodeKeepsReadiness: of a node, the cache keeps what the
// correlation reads (Ready, since when, why) and none of the rest.
func TestSlimNodeKeepsReadiness(t *testing.T) {
	for _, ready := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse} {
		n := eksNode(1, ready)
		got, err := slim(n)
		if err != nil {
			t.Fatal(err)
		}
		s := got.(*corev1.Node)
		if s.Name != n.Name || nodeReady(s) != nodeReady(n) || readyReason(s) != readyReason(n) || !notReadySince(s).Equal(notReadySince(n)) {
			t.Errorf("Ready=%s: slim node %s ready %v %q %s, want %s %v %q %s", ready, s.Name, nodeReady(s), readyReason(s), notReadySince(s),
				n.Name, nodeReady(n), readyReason(n), notReadySince(n))
		}
		if len(s.Labels)+len(s.Annotations)+len(s.Status.Images)+len(s.Status.Addresses) != 0 || len(s.Status.Conditions) != 1 || s.Status.Conditions[0].Message != "" {
			t.Errorf("the slim node keeps more than its readiness: %+v", s)
		}
	}
}

// BenchmarkNodeCache reports the heap a thousand cached nodes hold: as
// listed, and as the correlation keeps them.
func BenchmarkNodeCache(b *testing.B) {
	const nodes = 1000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, c := range []struct {
		name string
		keep func(*corev1.Node) any
	}{
		{"as_listed", func(n *corev1.Node) any { return n }},
		{"kept", func(n *corev1.Node) any { s, _ := slim(n); return s }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				before := heap()
				cached := make([]any, nodes)
				for i := range cached {
					cached[i] = c.keep(eksNode(i, corev1.ConditionTrue))
				}
				per = float64(heap()-before) / nodes
				runtime.KeepAlive(cached)
			}
			b.ReportMetric(per, "bytes/node")
		})
	}
}

// TestNodeStatusUpdatesWakeOnlyOnReadiness: a kubelet's status update that
// leaves a node Ready (or NotReady) does not wake the correlation; one
// that changes it does.
func TestNodeStatusUpdatesWakeOnlyOnReadiness(t *testing.T) {
	node := eksNode(1, corev1.ConditionTrue)
	api := kubefake.New(nil, node)
	var wakes atomic.Int32
	c := newCluster(api, func() { wakes.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.start(ctx)
	nodes := corev1.SchemeGroupVersion.WithResource("nodes")
	i := c.informer("Node")
	if !cache.WaitForCacheSync(ctx.Done(), i.HasSynced) {
		t.Fatal("the nodes never listed")
	}
	seen := func(rv string) bool {
		obj, ok, _ := i.GetStore().GetByKey(node.Name)
		return ok && obj.(*corev1.Node).ResourceVersion == rv
	}
	update := func(rv string, ready corev1.ConditionStatus) {
		t.Helper()
		n := eksNode(1, ready)
		n.ResourceVersion = rv
		n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
		if err := api.Update(ctx, nodes, "", n, n); err != nil {
			t.Fatal(err)
		}
		if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return seen(rv), nil }); err != nil {
			t.Fatalf("the update to %s never reached the cache", rv)
		}
	}
	// The node's Add wakes it once, after the list.
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) { return wakes.Load() > 0, nil }); err != nil {
		t.Fatal("the listed node never woke the correlation")
	}
	before := wakes.Load()
	update("200", corev1.ConditionTrue)
	update("201", corev1.ConditionTrue)
	if n := wakes.Load() - before; n != 0 {
		t.Errorf("two status updates of a Ready node woke the correlation %d times", n)
	}
	update("202", corev1.ConditionFalse)
	if n := wakes.Load() - before; n != 1 {
		t.Errorf("the node going NotReady woke the correlation %d times, want 1", n)
	}
}
