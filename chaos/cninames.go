package chaos

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The article's worst failure: on EKS a new node is NotReady until the VPC CNI's
// DaemonSet pod (kube-system/aws-node) runs on it, so a pod webhook that fails
// closed for kube-system keeps every new node NotReady.
//
// A kwok node has no kubelet and no CNI. The model has two halves:
//   - kwok's own node lifecycle (Stage resources, kwok/node-cni.yaml, loaded
//     by every Local cluster) keeps a node labelled CNILabel=CNIName NotReady
//     (reason NetworkPluginNotReady, NetworkUnavailable=True) until it is
//     also labelled CNIReadyLabel=true, and Ready after that;
//   - DeployCNI stands in for aws-node itself: it sets CNIReadyLabel on a
//     node while a pod of the aws-node DaemonSet is Running there.
//
// So a node joins NotReady, the DaemonSet controller creates its aws-node
// pod, the scheduler binds it, kwok runs it, the stand-in labels the node and
// kwok makes it Ready; a webhook that rejects the pod's creation breaks the
// chain at the second step, exactly where it breaks on EKS.
const (
	// CNILabel on a node says which CNI DaemonSet gives it its pod network;
	// a node with CNILabel=CNIName is NotReady until that DaemonSet's pod
	// runs on it. Nodes without it are Ready as soon as kwok sees them.
	CNILabel = "hookscope.dev/cni"
	// CNIReadyLabel=true on a node says its CNI pod is Running; DeployCNI
	// sets and removes it, kwok's node Stages turn it into Ready=True.
	CNIReadyLabel = "hookscope.dev/cni-ready"
	// CNIName is the name of the CNI DaemonSet (EKS's VPC CNI) and the value
	// of CNILabel on the nodes it serves.
	CNIName = "aws-node"
	// CNINamespace is the CNI DaemonSet's namespace.
	CNINamespace = metav1.NamespaceSystem
	// CNIImage is the aws-node container's image; nothing pulls it.
	CNIImage = "hookscope.local/aws-node:dev"

	// cniAppLabel selects the DaemonSet's pods, as on EKS.
	cniAppLabel = "k8s-app"
)

// cniDaemonSet is aws-node as far as scheduling goes: host network, system
// node critical, tolerating every taint (a NotReady node is tainted
// node.kubernetes.io/not-ready and network-unavailable), and here limited to
// the nodes that model it.
func cniDaemonSet() *appsv1.DaemonSet {
	podLabels := map[string]string{cniAppLabel: CNIName}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      CNIName,
			Namespace: CNINamespace,
			Labels:    map[string]string{cniAppLabel: CNIName},
		},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					NodeSelector:      map[string]string{CNILabel: CNIName},
					Tolerations:       []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					HostNetwork:       true,
					PriorityClassName: "system-node-critical",
					Containers: []corev1.Container{{
						Name:  CNIName,
						Image: CNIImage,
					}},
				},
			},
		},
	}
}
