package verify

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// checkPrometheusRule parses the spec of a PrometheusRule object as
// Prometheus parses a rule file (rulefmt: unknown fields, durations, label
// names, annotation templates), then every expression with the PromQL
// parser. It returns every error found.
func checkPrometheusRule(doc []byte) error {
	var obj struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return fmt.Errorf("reading the PrometheusRule: %w", err)
	}
	if obj.Kind != "PrometheusRule" {
		return fmt.Errorf("kind %q, want PrometheusRule", obj.Kind)
	}
	spec, err := yaml.Marshal(obj.Spec)
	if err != nil {
		return fmt.Errorf("writing the PrometheusRule's spec as a rule file: %w", err)
	}
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(spec, false, model.LegacyValidation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return fmt.Errorf("parsing the rule groups: %w", errors.Join(errs...))
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			if _, err := p.ParseExpr(r.Expr); err != nil {
				errs = append(errs, fmt.Errorf("group %s, rule %s%s: %w", g.Name, r.Alert, r.Record, err))
			}
		}
	}
	if n == 0 {
		errs = append(errs, errors.New("no rules"))
	}
	return errors.Join(errs...)
}

func TestPrometheusRuleExpressionsParse(t *testing.T) {
	shipped := string(readFile(t, filepath.Join(monitoringDir, "prometheusrule.yaml")))
	objs, _ := renderChart(t, baseRelease, baseNamespace, map[string]any{"prometheusRule": map[string]any{"enabled": true}})
	rendered, err := yaml.Marshal(mustFind(t, objs, "PrometheusRule", "hookscope-agent").Object)
	if err != nil {
		t.Fatal(err)
	}
	// rule wraps one rule in a PrometheusRule, for the cases the parser
	// must reject.
	rule := func(lines ...string) string {
		return "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: x}\nspec:\n  groups:\n    - name: g\n      rules:\n        - " +
			strings.Join(lines, "\n          ") + "\n"
	}
	for _, tc := range []struct {
		name    string
		doc     string
		wantErr string // empty: must parse
	}{
		{"deploy/monitoring/prometheusrule.yaml", shipped, ""},
		{"the chart's PrometheusRule", string(rendered), ""},
		{"a valid rule", rule("alert: A", "expr: sum by (webhook) (rate(hookscope_findings_total[5m])) > 0"), ""},
		{"an unclosed parenthesis", rule("alert: A", "expr: sum(rate(hookscope_findings_total[5m]) > 0"), "unclosed left parenthesis"},
		{"an unknown function", rule("alert: A", "expr: rates(hookscope_findings_total[5m]) > 0"), "unknown function"},
		{"a range vector where an instant one is needed", rule("alert: A", "expr: hookscope_findings_total[5m] > 0"), "only scalar and instant vector"},
		{"the shipped rules with one expression broken", strings.Replace(shipped, "== 1", "== == 1", 1), "unexpected"},
		{"a field Prometheus does not know", rule("alert: A", "expr: up == 0", "severity: critical"), "field severity not found"},
		{"a duration Prometheus cannot read", rule("alert: A", "expr: up == 0", "for: 5 minutes"), "unknown unit"},
		{"an annotation template that does not parse", rule("alert: A", "expr: up == 0", "annotations: {summary: '{{ $labels.webhook '}"), "template"},
		{"a rule with no expression", rule("alert: A"), "field 'expr' must be set"},
		{"no rules at all", "kind: PrometheusRule\nspec: {groups: []}\n", "no rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPrometheusRule([]byte(tc.doc))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("accepted; want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q; want one about %q", err, tc.wantErr)
			}
		})
	}
}
