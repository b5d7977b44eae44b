//go:build linux

package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/hookscope/hookscope/chaos"
)

// localCluster starts a real API server (the game day's local provider,
// which also routes 10.0.0.0/16 unreachable) for one test and deletes it
// afterwards.
func localCluster(t *testing.T, name string) (context.Context, *chaos.Local, kubernetes.Interface) {
	t.Helper()
	return chaos.LocalForTest(t, name, 5*time.Minute)
}

// The chart's release in the cluster test, beside deploy/base.
const (
	chartRelease   = "hs"
	chartNamespace = "hs-system"
	chartAccount   = "hs-agent"
)

// TestManifestsOnARealAPIServer applies deploy/base and the chart to a real
// API server, server-side, then asks it what their ServiceAccounts may do,
// whether the agent's pod lands on a node whose network is down, and
// whether deploy/README.md's exclusion keeps a failing webhook away from
// the agent.
func TestManifestsOnARealAPIServer(t *testing.T) {
	ctx, local, client := localCluster(t, "deploy")
	kc := "--kubeconfig=" + local.Kubeconfig()
	const node = "cni-not-ready"

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow() // later steps build on this one
		}
	}

	step("a node whose network plugin has not started is NotReady and tainted", func(t *testing.T) {
		// kwok keeps a node labelled hookscope.dev/cni=aws-node NotReady with
		// NetworkUnavailable=True (chaos/kwok/node-cni.yaml); the node
		// lifecycle controller then taints it, as on a real cluster.
		if err := local.AddNodeWithLabels(ctx, node, map[string]string{"hookscope.dev/cni": "aws-node"}, false); err != nil {
			t.Fatal(err)
		}
		want := []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/network-unavailable"}
		var have []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			have = have[:0]
			for _, taint := range n.Spec.Taints {
				if taint.Effect == corev1.TaintEffectNoSchedule {
					have = append(have, taint.Key)
				}
			}
			return !slices.ContainsFunc(want, func(k string) bool { return !slices.Contains(have, k) }), nil
		})
		if err != nil {
			t.Fatalf("node %s has NoSchedule taints %v, want %v: %v", node, have, want, err)
		}
	})

	step("deploy/base applies server-side", func(t *testing.T) {
		if _, err := kubectl(nil, kc, "apply", "--server-side", "--field-manager=hookscope-verify", "-k", baseDir); err != nil {
			t.Fatal(err)
		}
	})

	step("the chart applies server-side beside it", func(t *testing.T) {
		values := map[string]any{
			"namespace":        map[string]any{"create": true},
			"grafanaDashboard": map[string]any{"enabled": true},
			"tracefs":          map[string]any{"enabled": true},
		}
		objs, _ := renderChart(t, chartRelease, chartNamespace, values)
		var manifest []byte
		for _, o := range objs {
			b, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			manifest = append(append(manifest, "---\n"...), b...)
		}
		if _, err := kubectl(manifest, kc, "apply", "--server-side", "--field-manager=hookscope-verify", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	})

	step("each ServiceAccount may read what the agent needs and write only its Lease and Events", func(t *testing.T) {
		// kubectl asks about a resource only when the API server serves
		// it: cert-manager's Certificates, as installing cert-manager does.
		if _, err := kubectl([]byte(certificatesCRD), kc, "apply", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		for _, sa := range []struct{ ns, name, other string }{
			{baseNamespace, baseAccount, chartNamespace},
			{chartNamespace, chartAccount, baseNamespace},
		} {
			t.Run(sa.ns+"/"+sa.name, func(t *testing.T) {
				as := "--as=system:serviceaccount:" + sa.ns + ":" + sa.name
				for _, tc := range []struct {
					args []string
					want bool
				}{
					// What the agent reads.
					{[]string{"list", "pods", "-A"}, true},
					{[]string{"watch", "pods", "-A"}, true},
					{[]string{"watch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"}, true},
					{[]string{"list", "validatingwebhookconfigurations.admissionregistration.k8s.io"}, true},
					{[]string{"watch", "services", "-A"}, true},
					{[]string{"watch", "endpointslices.discovery.k8s.io", "-A"}, true},
					{[]string{"watch", "networkpolicies.networking.k8s.io", "-A"}, true},
					{[]string{"watch", "apiservices.apiregistration.k8s.io"}, true},
					{[]string{"watch", "customresourcedefinitions.apiextensions.k8s.io"}, true},
					{[]string{"update", "customresourcedefinitions.apiextensions.k8s.io"}, false},
					{[]string{"list", "certificates.cert-manager.io", "-A"}, true},
					{[]string{"watch", "certificates.cert-manager.io", "-A"}, true},
					{[]string{"update", "certificates.cert-manager.io", "-n", "default"}, false},
					{[]string{"delete", "apiservices.apiregistration.k8s.io"}, false},
					{[]string{"create", "networkpolicies.networking.k8s.io", "-n", "default"}, false},
					{[]string{"list", "poddisruptionbudgets.policy", "-A"}, true},
					{[]string{"watch", "poddisruptionbudgets.policy", "-A"}, true},
					{[]string{"create", "poddisruptionbudgets.policy", "-n", "default"}, false},
					{[]string{"delete", "poddisruptionbudgets.policy", "-n", "default"}, false},
					{[]string{"list", "horizontalpodautoscalers.autoscaling", "-A"}, true},
					{[]string{"watch", "horizontalpodautoscalers.autoscaling", "-A"}, true},
					{[]string{"update", "horizontalpodautoscalers.autoscaling", "-n", "default"}, false},
					{[]string{"create", "pods/eviction", "-n", "default"}, false},
					{[]string{"watch", "nodes"}, true},
					{[]string{"watch", "namespaces"}, true},
					{[]string{"delete", "namespaces"}, false},
					{[]string{"watch", "events", "-A"}, true},
					{[]string{"get", "daemonsets.apps", "-n", "kube-system"}, true},
					{[]string{"watch", "daemonsets.apps", "-A"}, true},
					{[]string{"watch", "replicasets.apps", "-A"}, true},
					{[]string{"watch", "deployments.apps", "-A"}, true},
					{[]string{"watch", "jobs.batch", "-A"}, true},
					{[]string{"get", "/metrics"}, true},
					// Its Lease, in its own namespace only.
					{[]string{"create", "leases.coordination.k8s.io", "-n", sa.ns}, true},
					{[]string{"get", "leases.coordination.k8s.io/hookscope-cluster-checks", "-n", sa.ns}, true},
					{[]string{"update", "leases.coordination.k8s.io/hookscope-cluster-checks", "-n", sa.ns}, true},
					{[]string{"watch", "leases.coordination.k8s.io/hookscope-cluster-checks", "-n", sa.ns}, true},
					{[]string{"list", "leases.coordination.k8s.io", "-n", sa.ns}, false},
					{[]string{"watch", "leases.coordination.k8s.io", "-n", "kube-node-lease"}, false},
					{[]string{"update", "leases.coordination.k8s.io/kube-scheduler", "-n", sa.ns}, false},
					{[]string{"delete", "leases.coordination.k8s.io/hookscope-cluster-checks", "-n", sa.ns}, false},
					{[]string{"update", "leases.coordination.k8s.io/hookscope-cluster-checks", "-n", sa.other}, false},
					{[]string{"create", "leases.coordination.k8s.io", "-n", sa.other}, false},
					{[]string{"update", "leases.coordination.k8s.io/kube-controller-manager", "-n", "kube-system"}, false},
					// Never Secrets, not even its own namespace's.
					{[]string{"get", "secrets", "-A"}, false},
					{[]string{"list", "secrets", "-A"}, false},
					{[]string{"watch", "secrets", "-A"}, false},
					{[]string{"get", "secrets", "-n", sa.ns}, false},
					{[]string{"list", "configmaps", "-A"}, false},
					// No other write.
					{[]string{"create", "pods", "-n", sa.ns}, false},
					{[]string{"delete", "pods", "-A"}, false},
					{[]string{"create", "pods", "--subresource=exec", "-n", sa.ns}, false},
					{[]string{"get", "pods", "--subresource=log", "-A"}, false},
					{[]string{"patch", "validatingwebhookconfigurations.admissionregistration.k8s.io"}, false},
					{[]string{"delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io"}, false},
					{[]string{"update", "services", "-A"}, false},
					{[]string{"patch", "nodes"}, false},
					{[]string{"delete", "nodes"}, false},
					// Its Events, on the call-outs that fail (cluster-scoped
					// objects: their Events are in default); no other verb.
					{[]string{"create", "events", "-n", "default"}, true},
					{[]string{"patch", "events", "-n", "default"}, true},
					{[]string{"update", "events", "-n", "default"}, false},
					{[]string{"delete", "events", "-A"}, false},
					{[]string{"deletecollection", "events", "-n", "default"}, false},
					{[]string{"create", "events.events.k8s.io", "-n", "default"}, false},
					{[]string{"patch", "daemonsets.apps", "-n", sa.ns}, false},
					{[]string{"create", "serviceaccounts", "--subresource=token", "-n", sa.ns}, false},
					{[]string{"bind", "clusterroles.rbac.authorization.k8s.io"}, false},
					{[]string{"impersonate", "serviceaccounts", "-A"}, false},
					{[]string{"post", "/metrics"}, false},
					{[]string{"get", "/logs"}, false},
				} {
					got, err := canI(kc, as, tc.args...)
					if err != nil {
						t.Error(err)
						continue
					}
					if got != tc.want {
						t.Errorf("can-i %s: %v, want %v", strings.Join(tc.args, " "), yesNo(got), yesNo(tc.want))
					}
				}
			})
		}
	})

	step("the agent's pods land on the NotReady node", func(t *testing.T) {
		for _, ns := range []string{baseNamespace, chartNamespace} {
			if _, err := agentPodOn(ctx, client, ns, node, ""); err != nil {
				t.Errorf("namespace %s: %v", ns, err)
			}
		}
	})

	step("a webhook that fails closed, with the documented exclusion, leaves the agent alone", func(t *testing.T) {
		// Fails every call: its Service does not exist. The API server finds
		// that out without dialing anything.
		fail := admissionv1.Fail
		none := admissionv1.SideEffectClassNone
		timeout := int32(2)
		webhook := &admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "blocks-everything"},
			Webhooks: []admissionv1.ValidatingWebhook{{
				Name: "blocks-everything.example.com",
				ClientConfig: admissionv1.WebhookClientConfig{
					Service: &admissionv1.ServiceReference{Namespace: "absent", Name: "absent", Path: ptr("/validate")},
				},
				Rules: []admissionv1.RuleWithOperations{{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"", "coordination.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"pods", "leases"}},
				}},
				// deploy/README.md's selector.
				NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "hookscope.dev/exclude-from-webhooks", Operator: metav1.LabelSelectorOpDoesNotExist},
				}},
				FailurePolicy:           &fail,
				SideEffects:             &none,
				TimeoutSeconds:          &timeout,
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
		if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, webhook, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		lease := func(ns, holder string) []byte {
			return fmt.Appendf(nil, "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: hookscope-cluster-checks, namespace: %s}\nspec: {holderIdentity: %s}\n", ns, holder)
		}
		// The webhook is live: it blocks a namespace without the label. The
		// API server may take a moment to see the new configuration.
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := kubectl(lease("default", node), kc, "create", "-f", "-")
			return err != nil && strings.Contains(err.Error(), `failed calling webhook "blocks-everything.example.com"`), nil
		})
		if err != nil {
			t.Fatalf("the webhook never blocked a Lease in namespace default: %v", err)
		}
		for _, sa := range []struct{ ns, name string }{{baseNamespace, baseAccount}, {chartNamespace, chartAccount}} {
			as := "--as=system:serviceaccount:" + sa.ns + ":" + sa.name
			// Leader election creates the Lease, then updates it (PUT).
			if _, err := kubectl(lease(sa.ns, node), kc, as, "create", "-f", "-"); err != nil {
				t.Errorf("the agent cannot create its Lease in %s: %v", sa.ns, err)
			}
			if _, err := kubectl(lease(sa.ns, "another-node"), kc, as, "replace", "-f", "-"); err != nil {
				t.Errorf("the agent cannot update its Lease in %s: %v", sa.ns, err)
			}
			// The DaemonSet controller replaces a deleted agent pod.
			old, err := agentPodOn(ctx, client, sa.ns, node, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := client.CoreV1().Pods(sa.ns).Delete(ctx, old, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
				t.Fatal(err)
			}
			if _, err := agentPodOn(ctx, client, sa.ns, node, old); err != nil {
				t.Errorf("namespace %s: no new agent pod after deleting %s: %v", sa.ns, old, err)
			}
		}
	})
}

// certificatesCRD is cert-manager's Certificate CRD, its schema left out.
const certificatesCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// canI asks the API server, through kubectl auth can-i, whether the user
// of the impersonation flag as may do what args say.
func canI(kc, as string, args ...string) (bool, error) {
	out, err := kubectl(nil, append([]string{kc, "auth", "can-i", as}, args...)...)
	answer := strings.TrimSpace(string(out))
	switch {
	case answer == "yes" && err == nil:
		return true, nil
	case answer == "no": // with exit status 1
		return false, nil
	}
	return false, fmt.Errorf("can-i %s: answer %q: %v", strings.Join(args, " "), answer, err)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// agentPodOn waits until an agent pod other than not is bound to the node
// in namespace ns and returns its name.
func agentPodOn(ctx context.Context, client kubernetes.Interface, ns, node, not string) (string, error) {
	var name string
	var seen []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=hookscope-agent"})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, p := range pods.Items {
			seen = append(seen, p.Name+" on "+p.Spec.NodeName)
			if p.Spec.NodeName == node && p.Name != not && p.DeletionTimestamp == nil {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", errors.Join(fmt.Errorf("no agent pod on %s in %s (pods: %v)", node, ns, seen), err)
	}
	return name, nil
}

func ptr[T any](v T) *T { return &v }
