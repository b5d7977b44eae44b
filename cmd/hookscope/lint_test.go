package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// lintNow is when the tests judge the manifests: 14 days before the CA
// in testdata/lint/kyverno/webhooks.json expires (2027-03-01), within
// lint's default 30-day horizon.
var lintNow = time.Date(2027, 2, 15, 0, 0, 0, 0, time.UTC)

// runLintArgs runs `hookscope lint ARGS` in process at lintNow and returns
// its stdout, stderr and exit status.
func runLintArgs(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	defer func(c func() time.Time) { lintClock = c }(lintClock)
	lintClock = func() time.Time { return lintNow }
	root := rootCommand("hookscope")
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"lint"}, args...))
	err := root.Execute()
	var exit *exitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.code
	case err != nil:
		t.Fatalf("lint %v: %v", args, err)
	}
	return out.String(), errOut.String(), 0
}

// findingLines are the "severity Kind webhook" lines of lint's text.
func findingLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, sev := range []string{"critical ", "warning ", "info "} {
			if strings.HasPrefix(l, sev) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestLintCharts: the webhooks of cert-manager-, Kyverno-, Gatekeeper- and
// aws-load-balancer-controller-shaped manifests get the risks their charts
// are known for, and the exit status CI reads.
func TestLintCharts(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  []string
		// exit status at each --fail-on
		exits map[string]int
	}{{
		input: "testdata/lint/cert-manager.yaml",
		want: []string{
			"warning NoPodDisruptionBudget Mutating/cert-manager-webhook/webhook.cert-manager.io",
			"warning NoPodDisruptionBudget Validating/cert-manager-webhook/webhook.cert-manager.io",
			"warning SingleReplica Mutating/cert-manager-webhook/webhook.cert-manager.io",
			"warning SingleReplica Validating/cert-manager-webhook/webhook.cert-manager.io",
			"warning StackedTimeouts Mutating/cert-manager-webhook/webhook.cert-manager.io",
			"warning StackedTimeouts Validating/cert-manager-webhook/webhook.cert-manager.io",
		},
		exits: map[string]int{"critical": 0, "warning": 1, "none": 0},
	}, {
		input: "testdata/lint/aws-load-balancer-controller.yaml",
		want: []string{
			"critical BlocksSystemPods Mutating/aws-load-balancer-webhook/mpod.elbv2.k8s.aws",
			"critical SelfDeadlock Mutating/aws-load-balancer-webhook/mpod.elbv2.k8s.aws",
			"warning NoExclusion Mutating/aws-load-balancer-webhook/mpod.elbv2.k8s.aws",
			"warning NoPodDisruptionBudget Mutating/aws-load-balancer-webhook/mpod.elbv2.k8s.aws",
			"warning NoPodDisruptionBudget Mutating/aws-load-balancer-webhook/mservice.elbv2.k8s.aws",
			"warning NoPodDisruptionBudget Mutating/aws-load-balancer-webhook/mtargetgroupbinding.elbv2.k8s.aws",
			"warning NoPodDisruptionBudget Validating/aws-load-balancer-webhook/vingress.elbv2.k8s.aws",
			"warning NoPodDisruptionBudget Validating/aws-load-balancer-webhook/vtargetgroupbinding.elbv2.k8s.aws",
			"warning StackedTimeouts Mutating/aws-load-balancer-webhook/mtargetgroupbinding.elbv2.k8s.aws",
			"warning StackedTimeouts Validating/aws-load-balancer-webhook/vtargetgroupbinding.elbv2.k8s.aws",
		},
		exits: map[string]int{"critical": 1, "warning": 1, "none": 0},
	}, {
		input: "testdata/lint/gatekeeper.yaml",
		want: []string{
			"info FailOpenSecurity Validating/gatekeeper-validating-webhook-configuration/validation.gatekeeper.sh",
		},
		exits: map[string]int{"critical": 0, "warning": 0, "info": 1},
	}, {
		// An aggregated API.
		input: "testdata/lint/metrics-server.yaml",
		want: []string{
			"info InsecureSkipTLSVerify APIService/v1beta1.metrics.k8s.io/v1beta1.metrics.k8s.io",
			"warning NoPodDisruptionBudget APIService/v1beta1.metrics.k8s.io/v1beta1.metrics.k8s.io",
			"warning SingleReplica APIService/v1beta1.metrics.k8s.io/v1beta1.metrics.k8s.io",
		},
		exits: map[string]int{"critical": 0, "warning": 1},
	}, {
		// A directory: the chart's YAML and the webhooks Kyverno writes at
		// run time, exported as a JSON List.
		input: "testdata/lint/kyverno",
		want: []string{
			"critical CABundleExpiring Mutating/kyverno-resource-mutating-webhook-cfg/mutate.kyverno.svc-fail",
			"critical CABundleExpiring Mutating/kyverno-verify-mutating-webhook-cfg/monitor-webhooks.kyverno.svc",
			"critical CABundleExpiring Validating/kyverno-policy-validating-webhook-cfg/validate-policy.kyverno.svc",
			"critical CABundleExpiring Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-fail",
			"critical CABundleExpiring Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-ignore",
			"info FailOpenSecurity Mutating/kyverno-verify-mutating-webhook-cfg/monitor-webhooks.kyverno.svc",
			"info FailOpenSecurity Validating/kyverno-policy-validating-webhook-cfg/validate-policy.kyverno.svc",
			"info FailOpenSecurity Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-ignore",
			"warning StackedTimeouts Mutating/kyverno-resource-mutating-webhook-cfg/mutate.kyverno.svc-fail",
			"warning StackedTimeouts Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-fail",
			"warning StackedTimeouts Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-ignore",
		},
		exits: map[string]int{"critical": 1},
	}} {
		t.Run(filepath.Base(tc.input), func(t *testing.T) {
			out, errOut, _ := runLintArgs(t, "", "-f", tc.input)
			if got := findingLines(out); !slices.Equal(got, tc.want) {
				t.Errorf("findings:\n%s\nwant:\n%s\n(output:\n%s)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), out)
			}
			if errOut != "" {
				t.Errorf("stderr: %s", errOut)
			}
			for failOn, want := range tc.exits {
				if _, _, code := runLintArgs(t, "", "-f", tc.input, "--fail-on", failOn); code != want {
					t.Errorf("--fail-on=%s: exit %d, want %d", failOn, code, want)
				}
			}
		})
	}
}

// TestLintWhere: each finding names the file, the document, its line and
// the Helm template it came from.
func TestLintWhere(t *testing.T) {
	out, _, _ := runLintArgs(t, "", "-f", "testdata/lint/aws-load-balancer-controller.yaml")
	want := "critical BlocksSystemPods Mutating/aws-load-balancer-webhook/mpod.elbv2.k8s.aws\n" +
		"  at testdata/lint/aws-load-balancer-controller.yaml: document 4 (line 103) from aws-load-balancer-controller/templates/webhook.yaml\n"
	if !strings.Contains(out, want) {
		t.Errorf("lint output lacks\n%s\nin\n%s", want, out)
	}
	if !strings.Contains(out, "5 call-outs judged, 1 other objects skipped: 2 critical, 8 warning, 0 info") {
		t.Errorf("summary: %s", out[strings.LastIndex(out[:len(out)-1], "\n")+1:])
	}
}

// mpodOnEveryPod is the article's mpod webhook, failing closed on every
// pod with no selector: critical, wherever it is read.
const mpodOnEveryPod = `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: %s
webhooks:
- name: mpod.elbv2.k8s.aws
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {namespace: kube-system, name: aws-load-balancer-webhook-service}
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
`

// TestLintBadInput: a document that does not parse, a webhook
// configuration the API server no longer serves and one with a misspelt
// field are errors that name the file, the document and its line, exit
// 2, and lose nothing else: the documents around them are judged.
func TestLintBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rendered.yaml")
	docs := []string{
		fmt.Sprintf(mpodOnEveryPod, "first"),
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  key: [unclosed\n",
		"# only a comment\n",
		strings.Replace(fmt.Sprintf(mpodOnEveryPod, "beta"), "admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1", 1),
		strings.Replace(fmt.Sprintf(mpodOnEveryPod, "misspelt"), "  sideEffects: None", "  sideEffects: None\n  namespaceSelecter: {}", 1),
		fmt.Sprintf(mpodOnEveryPod, "last"),
	}
	if err := os.WriteFile(file, []byte("---\n"+strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runLintArgs(t, "", "-f", dir)
	if code != 2 {
		t.Errorf("exit %d, want 2 (input not read whole)", code)
	}
	for _, want := range []string{
		file + ": document 2 (line 15): not YAML: line 20: did not find expected ',' or ']'",
		file + ": document 4 (line 24): MutatingWebhookConfiguration beta: apiVersion admissionregistration.k8s.io/v1beta1: the API server serves webhook configurations as admissionregistration.k8s.io/v1 only",
		file + `: document 5 (line 37): MutatingWebhookConfiguration misspelt: json: unknown field "namespaceSelecter"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// The misspelt one is judged as the API server would store it (with
	// the field dropped), and the documents around the bad ones too.
	for _, config := range []string{"first", "misspelt", "last"} {
		if !strings.Contains(out, "critical BlocksSystemPods Mutating/"+config+"/mpod.elbv2.k8s.aws") {
			t.Errorf("no BlocksSystemPods for %s:\n%s", config, out)
		}
	}
	if strings.Contains(out, "Mutating/beta/") {
		t.Errorf("a v1beta1 configuration was judged:\n%s", out)
	}
}

// TestLintFormats: stdin in, JSON and SARIF out.
func TestLintFormats(t *testing.T) {
	stdin := "---\n# Source: lbc/templates/webhook.yaml\n" + fmt.Sprintf(mpodOnEveryPod, "lbc")

	out, _, code := runLintArgs(t, stdin, "-f", "-", "-o", "json")
	var report LintReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if code != 1 || report.Kind != "LintReport" || report.Summary.Critical == 0 || report.Summary.Judged != 1 {
		t.Errorf("-o json: exit %d, report %+v", code, report)
	}
	if f := report.Findings[0]; f.File != "-" || f.Document != 1 || f.Line != 2 || f.Source != "lbc/templates/webhook.yaml" || f.Severity != "critical" {
		t.Errorf("first finding %+v", f)
	}

	out, _, _ = runLintArgs(t, "", "-f", "testdata/lint/aws-load-balancer-controller.yaml", "-o", "sarif")
	checkSARIF(t, out, "testdata/lint/aws-load-balancer-controller.yaml")
}

// checkSARIF checks what SARIF 2.1.0 requires of a log, and what code
// scanning reads: each result's rule is among the driver's rules, its
// level is a SARIF level, and it points at a line of file.
func checkSARIF(t *testing.T, out, file string) {
	t.Helper()
	var log struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID               string `json:"id"`
						ShortDescription struct {
							Text string `json:"text"`
						} `json:"shortDescription"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatalf("-o sarif: %v\n%s", err, out)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif-schema-2.1.0") || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "hookscope" {
		t.Fatalf("-o sarif: not a SARIF 2.1.0 log of one hookscope run:\n%s", out)
	}
	run := log.Runs[0]
	if len(run.Results) == 0 {
		t.Fatal("-o sarif: no results")
	}
	for _, r := range run.Results {
		rules := run.Tool.Driver.Rules
		if r.RuleIndex < 0 || r.RuleIndex >= len(rules) || rules[r.RuleIndex].ID != r.RuleID || rules[r.RuleIndex].ShortDescription.Text == "" {
			t.Errorf("result %s: ruleIndex %d does not name its rule in %v", r.RuleID, r.RuleIndex, rules)
		}
		if !slices.Contains([]string{"error", "warning", "note"}, r.Level) || r.Message.Text == "" {
			t.Errorf("result %s: level %q, message %q", r.RuleID, r.Level, r.Message.Text)
		}
		if len(r.Locations) != 1 || r.Locations[0].PhysicalLocation.ArtifactLocation.URI != file || r.Locations[0].PhysicalLocation.Region.StartLine < 1 {
			t.Errorf("result %s: locations %+v", r.RuleID, r.Locations)
		}
	}
}

// TestLintNetworkPolicy: a NetworkPolicy of the chart that admits only
// the monitoring namespace shuts the API server out of the webhook's pods.
func TestLintNetworkPolicy(t *testing.T) {
	chart, err := os.ReadFile("testdata/lint/kyverno/chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := os.ReadFile("testdata/lint/kyverno/webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	fenced := strings.Replace(string(chart), "  - from: []\n", "  - from:\n    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: monitoring\n", 1)
	if fenced == string(chart) {
		t.Fatal("the chart's NetworkPolicy changed: update this test")
	}
	out, _, _ := runLintArgs(t, fenced+"---\n"+string(hooks), "-f", "-")
	if !strings.Contains(out, "critical NetworkPolicyDenies Validating/kyverno-resource-validating-webhook-cfg/validate.kyverno.svc-fail") {
		t.Errorf("no NetworkPolicyDenies:\n%s", out)
	}
	out, _, _ = runLintArgs(t, string(chart)+"---\n"+string(hooks), "-f", "-")
	if strings.Contains(out, "NetworkPolicyDenies") {
		t.Errorf("the chart's own policy (port 9443 from anywhere) denies:\n%s", out)
	}
}

// TestLintConversionWebhook: a CRD's conversion webhook is judged too;
// its caBundle here is Kyverno's CA, 14 days from expiring.
func TestLintConversionWebhook(t *testing.T) {
	hooks, err := os.ReadFile("testdata/lint/kyverno/webhooks.json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Webhooks []struct {
				ClientConfig struct {
					CABundle string `json:"caBundle"`
				} `json:"clientConfig"`
			} `json:"webhooks"`
		} `json:"items"`
	}
	if err := json.Unmarshal(hooks, &list); err != nil {
		t.Fatal(err)
	}
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - {name: v1, served: true, storage: true}
  - {name: v1beta1, served: true, storage: false}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        service: {namespace: widgets, name: widgets-webhook, path: /convert}
        caBundle: ` + list.Items[0].Webhooks[0].ClientConfig.CABundle + "\n"
	out, _, code := runLintArgs(t, crd, "-f", "-")
	if !strings.Contains(out, "critical CABundleExpiring Conversion/widgets.example.com/widgets.example.com") || code != 1 ||
		!strings.Contains(out, "1 call-outs judged") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// FuzzParseManifest: no input makes the reader panic, and every object it
// returns names a document of the input.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{fmt.Sprintf(mpodOnEveryPod, "x"), "---\n---\n", "kind: List\napiVersion: v1\nitems: [{}]\n", "a: [\n---\nb: 1\n", "--- # c\n{}\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, _ := parseManifest("in.yaml", b)
		lines := bytes.Count(b, []byte("\n")) + 2
		for _, o := range objs {
			if o.where.doc < 1 || o.where.line < 1 || o.where.line > lines {
				t.Fatalf("object %s at %v of a %d-line input", o.name, o.where, lines)
			}
		}
	})
}
