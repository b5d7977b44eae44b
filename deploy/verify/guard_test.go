package verify

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartGuardIsOptIn: by default the chart renders no write permission
// and no guard flag; with guard.enabled, a ClusterRole of its own grants
// get and update on the named configurations only (and Events), the
// agent gets the guard's flags, and enabling it without names fails.
func TestChartGuardIsOptIn(t *testing.T) {
	objs, _ := renderChart(t, baseRelease, baseNamespace, nil)
	for _, o := range objs {
		if strings.HasSuffix(o.GetName(), "-guard") {
			t.Errorf("the default chart renders %s %s", o.GetKind(), o.GetName())
		}
	}
	if args := agentArgsOf(t, objs); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--guard") }) {
		t.Errorf("the default chart passes %v", args)
	}

	on := map[string]any{"guard": map[string]any{"enabled": true, "configurations": []any{"aws-load-balancer-webhook"}, "grace": "30s"}}
	objs, _ = renderChart(t, baseRelease, baseNamespace, on)
	role := mustFind(t, objs, "ClusterRole", "hookscope-agent-guard")
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	if len(rules) != 2 {
		t.Fatalf("guard ClusterRole rules %v, want the configurations and Events", rules)
	}
	cfgRule := rules[0].(map[string]any)
	names, _, _ := unstructured.NestedStringSlice(cfgRule, "resourceNames")
	verbs, _, _ := unstructured.NestedStringSlice(cfgRule, "verbs")
	if !slices.Equal(names, []string{"aws-load-balancer-webhook"}) || !slices.Equal(verbs, []string{"get", "update"}) {
		t.Errorf("guard rule %v: want get and update on aws-load-balancer-webhook only", cfgRule)
	}
	mustFind(t, objs, "ClusterRoleBinding", "hookscope-agent-guard")
	args := agentArgsOf(t, objs)
	for _, want := range []string{"--guard", "--guard-grace=30s", "--guard-revert-after=5m", "--guard-ttl=6h", "--guard-window=10m", "--guard-max=3"} {
		if !slices.Contains(args, want) {
			t.Errorf("agent args %v lack %s", args, want)
		}
	}

	_, _, err := render(baseRelease, baseNamespace, map[string]any{"guard": map[string]any{"enabled": true}})
	if err == nil || !strings.Contains(err.Error(), "guard.configurations must name") {
		t.Errorf("guard on with no configurations rendered (err %v); want it refused", err)
	}
}

// agentArgsOf is the agent container's args in rendered objs.
func agentArgsOf(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		return args
	}
	t.Fatal("no DaemonSet rendered")
	return nil
}
