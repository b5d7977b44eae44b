package verify

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// everyOption turns on every optional part of the chart.
var everyOption = map[string]any{
	"namespace":        map[string]any{"create": true},
	"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
	"grafanaDashboard": map[string]any{"enabled": true},
	"tracefs":          map[string]any{"enabled": true},
	"agent":            map[string]any{"extraArgs": []any{"--no-ebpf"}, "extraEnv": []any{map[string]any{"name": "GODEBUG", "value": "madvdontneed=1"}}},
	"podLabels":        map[string]any{"team": "platform"},
	"podAnnotations":   map[string]any{"example.com/scrape": "false"},
	"imagePullSecrets": []any{map[string]any{"name": "registry"}},
	"affinity":         map[string]any{"nodeAffinity": map[string]any{}},
}

func TestChartPassesHelmLint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"default values", nil},
		{"every option on", everyOption},
		{"no resource limits", map[string]any{"resources": map[string]any{"limits": nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			linter := lint.AllWithKubeVersion(chartDir, tc.values, baseNamespace, &kubeVersion)
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

// TestHelmLintCatchesABrokenChart shows that the lint above can fail: the
// same chart with a template that does not parse is an error.
func TestHelmLintCatchesABrokenChart(t *testing.T) {
	dir := t.TempDir()
	if err := copyTree(chartDir, dir); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "templates", "serviceaccount.yaml")
	writeFile(t, broken, []byte("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ include \"hookscope.fullname\" . \n"))
	linter := lint.AllWithKubeVersion(dir, nil, baseNamespace, &kubeVersion)
	if linter.HighestSeverity < support.ErrorSev {
		t.Fatalf("helm lint accepted a template with an unclosed action: %v", linter.Messages)
	}
}

// TestChartRendersTheKustomizeBase holds the two ways to install hookscope
// together: the chart with its defaults (and namespace.create=true, as
// deploy/base has a Namespace) renders exactly deploy/base, apart from the
// labels only Helm knows.
func TestChartRendersTheKustomizeBase(t *testing.T) {
	base := buildBase(t)
	chart, _ := renderChart(t, baseRelease, baseNamespace, map[string]any{"namespace": map[string]any{"create": true}})
	for _, o := range chart {
		labels := o.GetLabels()
		for _, l := range helmLabels {
			if _, ok := labels[l]; !ok {
				t.Errorf("chart %s/%s lacks label %s", o.GetKind(), o.GetName(), l)
			}
			delete(labels, l)
		}
		o.SetLabels(labels)
	}

	t.Run("the ClusterRole rules are equal", func(t *testing.T) {
		want := mustFind(t, base, "ClusterRole", "hookscope-agent").Object["rules"]
		got := mustFind(t, chart, "ClusterRole", "hookscope-agent").Object["rules"]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ClusterRole rules: deploy/base (-) and the chart (+) differ:\n%s", diff)
		}
	})
	t.Run("the Lease Role rules are equal", func(t *testing.T) {
		want := mustFind(t, base, "Role", "hookscope-agent-leader").Object["rules"]
		got := mustFind(t, chart, "Role", "hookscope-agent-leader").Object["rules"]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Role rules: deploy/base (-) and the chart (+) differ:\n%s", diff)
		}
	})
	t.Run("the DaemonSets are equal", func(t *testing.T) {
		want := mustFind(t, base, "DaemonSet", "hookscope-agent").Object["spec"]
		got := mustFind(t, chart, "DaemonSet", "hookscope-agent").Object["spec"]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DaemonSet spec: deploy/base (-) and the chart (+) differ:\n%s", diff)
		}
	})
	t.Run("every object is equal", func(t *testing.T) {
		if b, c := describe(sorted(base)), describe(sorted(chart)); b != c {
			t.Fatalf("deploy/base has %s\nthe chart renders %s", b, c)
		}
		for _, want := range base {
			got := mustFind(t, chart, want.GetKind(), want.GetName())
			if diff := cmp.Diff(want.Object, got.Object); diff != "" {
				t.Errorf("%s %s: deploy/base (-) and the chart (+) differ:\n%s", want.GetKind(), want.GetName(), diff)
			}
		}
	})
}

func sorted(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := slices.Clone(objs)
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		return strings.Compare(a.GetKind()+"/"+a.GetName(), b.GetKind()+"/"+b.GetName())
	})
	return out
}

// TestChartValuesReachTheAgent checks that each value ends up where the
// agent or the kubelet reads it.
func TestChartValuesReachTheAgent(t *testing.T) {
	values := map[string]any{
		"fullnameOverride": "webhook-watch",
		"image":            map[string]any{"repository": "registry.example/hookscope", "tag": "v1.2.3"},
		"agent": map[string]any{
			"listen":                   "127.0.0.1:19477",
			"otlp":                     map[string]any{"endpoint": "collector.monitoring.svc:4318", "protocol": "http", "insecure": false},
			"probeInterval":            "30s",
			"certHorizon":              "720h",
			"apiserverMetricsInterval": "1m",
			"leaderElect":              false,
			"logLevel":                 "debug",
			"peerPort":                 19478,
			"peerFindings":             true,
			"extraArgs":                []any{"--no-ebpf", "--probe-timeout=5s"},
		},
		"resources":         map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "100Mi"}, "limits": map[string]any{"cpu": "1", "memory": "300Mi"}},
		"tolerations":       []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}},
		"nodeSelector":      map[string]any{"node-role.example/infra": "true"},
		"priorityClassName": "infra-critical",
	}
	objs, notes := renderChart(t, "prod", "observability", values)
	ds := mustFind(t, objs, "DaemonSet", "webhook-watch")
	pod := ds.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	agent := pod["containers"].([]any)[0].(map[string]any)

	wantArgs := []any{
		"agent",
		"--listen=127.0.0.1:19477",
		"--otlp-endpoint=collector.monitoring.svc:4318",
		"--otlp-protocol=http",
		"--otlp-insecure=false",
		"--probe-interval=30s",
		"--cert-horizon=720h",
		"--apiserver-metrics-interval=1m",
		"--object-checks=true",
		"--leader-elect=false",
		"--log-level=debug",
		"--state-file=/var/run/hookscope/findings.json",
		"--peer-listen=$(POD_IP):19478",
		"--peer-findings",
		"--no-ebpf",
		"--probe-timeout=5s",
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"args", agent["args"], wantArgs},
		{"image", agent["image"], "registry.example/hookscope:v1.2.3"},
		{"resources", agent["resources"], values["resources"]},
		{"tolerations", pod["tolerations"], values["tolerations"]},
		// Maps merge with the defaults (a key set to null removes one).
		{"nodeSelector", pod["nodeSelector"], map[string]any{"kubernetes.io/os": "linux", "node-role.example/infra": "true"}},
		{"priorityClassName", pod["priorityClassName"], "infra-critical"},
		{"serviceAccountName", pod["serviceAccountName"], "webhook-watch"},
		{"liveness probe port", agent["livenessProbe"].(map[string]any)["httpGet"].(map[string]any)["port"], float64(19477)},
		{"liveness probe host", agent["livenessProbe"].(map[string]any)["httpGet"].(map[string]any)["host"], "127.0.0.1"},
		{"readiness probe port", agent["readinessProbe"].(map[string]any)["httpGet"].(map[string]any)["port"], float64(19477)},
	} {
		if diff := cmp.Diff(tc.want, tc.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.what, diff)
		}
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && ns != "observability" {
			t.Errorf("%s %s is in namespace %q, not the release's", o.GetKind(), o.GetName(), ns)
		}
	}
	for _, binding := range []string{"ClusterRoleBinding/webhook-watch", "RoleBinding/webhook-watch-leader"} {
		kind, name, _ := strings.Cut(binding, "/")
		subjects := mustFind(t, objs, kind, name).Object["subjects"]
		want := []any{map[string]any{"kind": "ServiceAccount", "name": "webhook-watch", "namespace": "observability"}}
		if diff := cmp.Diff(want, subjects); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", binding, diff)
		}
	}
	for _, want := range []string{"observability/webhook-watch", "collector.monitoring.svc:4318 (http)", "9477:19477"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	t.Run("no memory limit, no GOMEMLIMIT", func(t *testing.T) {
		objs, _ := renderChart(t, "prod", "observability", map[string]any{"resources": map[string]any{"limits": nil}})
		b, _ := yaml.Marshal(mustFind(t, objs, "DaemonSet", "prod-agent").Object)
		if bytes.Contains(b, []byte("GOMEMLIMIT")) {
			t.Errorf("GOMEMLIMIT refers to a memory limit that is not set:\n%s", b)
		}
	})
}

// TestChartShipsTheMonitoringOfDeployMonitoring checks that the chart's
// optional PrometheusRule and dashboard are deploy/monitoring's, which
// otel's tests check against a real scrape of the agent's metrics.
func TestChartShipsTheMonitoringOfDeployMonitoring(t *testing.T) {
	for _, f := range []string{"prometheusrule.yaml", "grafana-dashboard.json"} {
		t.Run("files/"+f+" is a copy of deploy/monitoring/"+f, func(t *testing.T) {
			if !bytes.Equal(readFile(t, filepath.Join(chartDir, "files", f)), readFile(t, filepath.Join(monitoringDir, f))) {
				t.Errorf("%s/files/%s differs from %s/%s: copy it again", chartDir, f, monitoringDir, f)
			}
		})
	}

	off, _ := renderChart(t, baseRelease, baseNamespace, nil)
	for _, kind := range []string{"PrometheusRule", "ConfigMap", "Namespace"} {
		for _, o := range off {
			if o.GetKind() == kind {
				t.Errorf("default values render a %s (%s); it is optional", kind, o.GetName())
			}
		}
	}

	on, _ := renderChart(t, baseRelease, baseNamespace, everyOption)
	t.Run("the PrometheusRule has deploy/monitoring's groups", func(t *testing.T) {
		var want map[string]any
		if err := yaml.Unmarshal(readFile(t, filepath.Join(monitoringDir, "prometheusrule.yaml")), &want); err != nil {
			t.Fatal(err)
		}
		rule := mustFind(t, on, "PrometheusRule", "hookscope-agent")
		if diff := cmp.Diff(want["spec"], rule.Object["spec"]); diff != "" {
			t.Errorf("PrometheusRule spec: deploy/monitoring (-) and the chart (+) differ:\n%s", diff)
		}
		if rule.GetNamespace() != baseNamespace || rule.GetLabels()["release"] != "prometheus" {
			t.Errorf("PrometheusRule namespace %q, labels %v: want the release's namespace and prometheusRule.labels", rule.GetNamespace(), rule.GetLabels())
		}
	})
	t.Run("the dashboard ConfigMap holds deploy/monitoring's dashboard", func(t *testing.T) {
		cm := mustFind(t, on, "ConfigMap", "hookscope-agent-dashboard")
		got, _, _ := unstructured.NestedString(cm.Object, "data", "hookscope.json")
		want := strings.TrimRight(string(readFile(t, filepath.Join(monitoringDir, "grafana-dashboard.json"))), "\n")
		if got != want {
			t.Errorf("dashboard ConfigMap data differs from %s/grafana-dashboard.json", monitoringDir)
		}
		if cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap labels %v: Grafana's sidecar looks for grafana_dashboard=1", cm.GetLabels())
		}
	})
	t.Run("tracefs is mounted read-only when asked for", func(t *testing.T) {
		ds := mustFind(t, on, "DaemonSet", "hookscope-agent")
		mounts := hostMounts(t, ds)
		if ro, ok := mounts["/sys/kernel/tracing"]; !ok || !ro {
			t.Errorf("host mounts %v: want /sys/kernel/tracing read-only", mounts)
		}
		if _, ok := hostMounts(t, mustFind(t, off, "DaemonSet", "hookscope-agent"))["/sys/kernel/tracing"]; ok {
			t.Error("tracefs is mounted with default values; it is optional")
		}
	})
}

// TestChartOnSELinuxAndOpenShift: with seLinux.type the agent's container
// asks for it; with openshift.scc.create the chart renders an SCC that
// admits the agent's pod for its ServiceAccount alone, allowing exactly
// the capabilities the DaemonSet adds, and nothing privileged. Neither is
// rendered by default.
func TestChartOnSELinuxAndOpenShift(t *testing.T) {
	objs, _ := renderChart(t, "hookscope", "hookscope", map[string]any{
		"seLinux":   map[string]any{"type": "spc_t"},
		"openshift": map[string]any{"scc": map[string]any{"create": true}},
	})
	ds := mustFind(t, objs, "DaemonSet", "hookscope-agent")
	containers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	sc := containers[0].(map[string]any)["securityContext"].(map[string]any)
	if se, _ := sc["seLinuxOptions"].(map[string]any); se["type"] != "spc_t" || se["level"] != "s0" {
		t.Errorf("container seLinuxOptions %v, want type spc_t, level s0", sc["seLinuxOptions"])
	}
	added, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
	scc := mustFind(t, objs, "SecurityContextConstraints", "hookscope-agent")
	allowed, _, _ := unstructured.NestedStringSlice(scc.Object, "allowedCapabilities")
	if strings.Join(allowed, ",") != strings.Join(added, ",") {
		t.Errorf("SCC allows capabilities %v, the DaemonSet adds %v", allowed, added)
	}
	users, _, _ := unstructured.NestedStringSlice(scc.Object, "users")
	if len(users) != 1 || users[0] != "system:serviceaccount:hookscope:hookscope-agent" {
		t.Errorf("SCC users %v, want the agent's ServiceAccount only", users)
	}
	for field, want := range map[string]any{"allowHostNetwork": true, "allowPrivilegedContainer": false, "allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem": true, "allowHostPID": false} {
		if got := scc.Object[field]; got != want {
			t.Errorf("SCC %s = %v, want %v", field, got, want)
		}
	}
	if se, _, _ := unstructured.NestedString(scc.Object, "seLinuxContext", "seLinuxOptions", "type"); se != "spc_t" {
		t.Errorf("SCC SELinux type %q, want spc_t", se)
	}
	def, _ := renderChart(t, "hookscope", "hookscope", nil)
	if find(def, "SecurityContextConstraints", "hookscope-agent") != nil {
		t.Error("an SCC is rendered with default values")
	}
}
