package verify

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestAgentIsLeastPrivileged reads the objects an operator applies, from
// both deploy/base and the chart, and checks the promises deploy/README.md
// makes about them. The cluster test checks the same RBAC on a real API
// server.
func TestAgentIsLeastPrivileged(t *testing.T) {
	chart, _ := renderChart(t, baseRelease, baseNamespace, nil)
	for _, src := range []struct {
		name string
		objs []*unstructured.Unstructured
	}{
		{"deploy/base", buildBase(t)},
		{"chart", chart},
	} {
		t.Run(src.name, func(t *testing.T) {
			t.Run("the ClusterRole only reads, but for Events, and never Secrets", func(t *testing.T) {
				var role rbacv1.ClusterRole
				fromUnstructured(t, mustFind(t, src.objs, "ClusterRole", "hookscope-agent"), &role)
				for _, r := range role.Rules {
					if isEventsRule(r) {
						if !slices.Equal(r.Verbs, []string{"create", "patch"}) {
							t.Errorf("rule %v: want create and patch on core Events only", r)
						}
						continue
					}
					if bad := without(r.Verbs, "get", "list", "watch"); len(bad) > 0 {
						t.Errorf("rule %v grants %v", r, bad)
					}
					if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
						t.Errorf("rule %v reaches Secrets", r)
					}
					if bad := without(r.NonResourceURLs, "/metrics"); len(bad) > 0 {
						t.Errorf("rule %v grants non-resource URLs %v", r, bad)
					}
				}
			})
			t.Run("the Role only keeps the Lease", func(t *testing.T) {
				var role rbacv1.Role
				fromUnstructured(t, mustFind(t, src.objs, "Role", "hookscope-agent-leader"), &role)
				for _, r := range role.Rules {
					if !slices.Equal(r.APIGroups, []string{"coordination.k8s.io"}) || !slices.Equal(r.Resources, []string{"leases"}) {
						t.Errorf("rule %v reaches more than Leases", r)
					}
					if bad := without(r.Verbs, "create", "get", "update", "list", "watch"); len(bad) > 0 {
						t.Errorf("rule %v grants %v", r, bad)
					}
					if (slices.Contains(r.Verbs, "list") || slices.Contains(r.Verbs, "watch")) && len(r.ResourceNames) == 0 {
						t.Errorf("rule %v lists or watches every Lease of the namespace", r)
					}
				}
			})
			t.Run("the DaemonSet runs where the network is down, with three capabilities", func(t *testing.T) {
				var ds appsv1.DaemonSet
				fromUnstructured(t, mustFind(t, src.objs, "DaemonSet", "hookscope-agent"), &ds)
				pod := ds.Spec.Template.Spec
				if !pod.HostNetwork || pod.HostPID || pod.HostIPC {
					t.Errorf("hostNetwork %v, hostPID %v, hostIPC %v: want only the host network", pod.HostNetwork, pod.HostPID, pod.HostIPC)
				}
				if pod.PriorityClassName != "system-node-critical" {
					t.Errorf("priorityClassName %q", pod.PriorityClassName)
				}
				if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
					return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
				}) {
					t.Errorf("tolerations %v: want one that tolerates every taint", pod.Tolerations)
				}
				if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
					t.Fatalf("want one container, have %d (and %d init)", len(pod.Containers), len(pod.InitContainers))
				}
				c := pod.Containers[0]
				sc := c.SecurityContext
				if sc == nil || sc.Capabilities == nil {
					t.Fatal("the agent container has no securityContext with capabilities")
				}
				if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Error("the agent container must set privileged: false and allowPrivilegeEscalation: false")
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Error("the agent's root filesystem is writable")
				}
				want := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}}
				if diff := cmp.Diff(want, sc.Capabilities); diff != "" {
					t.Errorf("capabilities (-want +got):\n%s", diff)
				}
				for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[name]; !ok {
						t.Errorf("no %s request", name)
					}
					if _, ok := c.Resources.Limits[name]; !ok {
						t.Errorf("no %s limit", name)
					}
				}
			})
			t.Run("every host path is mounted read-only", func(t *testing.T) {
				mounts := hostMounts(t, mustFind(t, src.objs, "DaemonSet", "hookscope-agent"))
				want := map[string]bool{"/sys/kernel/btf": true}
				if diff := cmp.Diff(want, mounts); diff != "" {
					t.Errorf("host paths and whether read-only (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// hostMounts maps each hostPath volume of the DaemonSet to whether every
// mount of it is read-only.
func hostMounts(t *testing.T, u *unstructured.Unstructured) map[string]bool {
	t.Helper()
	var ds appsv1.DaemonSet
	fromUnstructured(t, u, &ds)
	out := map[string]bool{}
	pod := ds.Spec.Template.Spec
	for _, v := range pod.Volumes {
		if v.HostPath == nil {
			continue
		}
		ro := true
		for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name && !m.ReadOnly {
					ro = false
				}
			}
		}
		out[v.HostPath.Path] = ro
	}
	return out
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("reading %s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// without returns the items of have that allowed does not list.
func without(have []string, allowed ...string) []string {
	var out []string
	for _, h := range have {
		if !slices.Contains(allowed, h) {
			out = append(out, h)
		}
	}
	return out
}

// copyTree copies the files under src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// isEventsRule is the ClusterRole's one rule that may write: core Events,
// and nothing else in the same rule.
func isEventsRule(r rbacv1.PolicyRule) bool {
	return slices.Equal(r.APIGroups, []string{""}) && slices.Equal(r.Resources, []string{"events"}) && len(r.ResourceNames) == 0 && len(r.NonResourceURLs) == 0
}
