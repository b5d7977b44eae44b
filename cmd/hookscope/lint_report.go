package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hookscope/hookscope/risk"
)

// writeLint writes the result as text, json or sarif.
func writeLint(w io.Writer, format string, res lintResult) error {
	switch format {
	case "json":
		return writeJSON(w, lintJSON(res))
	case "sarif":
		return writeJSON(w, lintSARIF(res))
	}
	for _, f := range res.Findings {
		fmt.Fprintf(w, "%s %s %s\n  at %s\n  %s\n  fix: %s\n\n", f.Severity, f.Kind, f.Webhook, f.Where, f.Detail, f.Fix)
	}
	c := countBySeverity(res.Findings)
	_, err := fmt.Fprintf(w, "%d call-outs judged, %d other objects skipped: %d critical, %d warning, %d info\n",
		res.Judged, res.Skipped, c[risk.Critical], c[risk.Warning], c[risk.Info])
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func countBySeverity(fs []lintFinding) map[risk.Severity]int {
	c := map[risk.Severity]int{}
	for _, f := range fs {
		c[f.Severity]++
	}
	return c
}

// LintReport is lint's -o json.
type LintReport struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Findings   []LintReportEntry `json:"findings"`
	Errors     []string          `json:"errors,omitempty"`
	Summary    LintSummary       `json:"summary"`
}

// LintReportEntry is one risk and where its object was read.
type LintReportEntry struct {
	risk.Risk
	File     string `json:"file"`
	Document int    `json:"document"`
	Line     int    `json:"line"`
	Source   string `json:"source,omitempty"` // the Helm template
}

// LintSummary counts what lint judged and found.
type LintSummary struct {
	Judged   int `json:"judged"`
	Skipped  int `json:"skipped"`
	Critical int `json:"critical"`
	Warning  int `json:"warning"`
	Info     int `json:"info"`
}

func lintJSON(res lintResult) LintReport {
	c := countBySeverity(res.Findings)
	r := LintReport{APIVersion: outputAPIVersion, Kind: "LintReport", Findings: []LintReportEntry{},
		Summary: LintSummary{Judged: res.Judged, Skipped: res.Skipped, Critical: c[risk.Critical], Warning: c[risk.Warning], Info: c[risk.Info]}}
	for _, f := range res.Findings {
		r.Findings = append(r.Findings, LintReportEntry{Risk: f.Risk, File: f.Where.file, Document: f.Where.doc, Line: f.Where.line, Source: f.Where.source})
	}
	for _, e := range res.Errors {
		r.Errors = append(r.Errors, e.Error())
	}
	return r
}

// ruleHelp is each risk kind in one line, for SARIF's rules.
var ruleHelp = map[risk.Kind]string{
	risk.BlocksSystemPods:               "A webhook that fails closed matches CREATE of kube-system pods: the CNI, kube-proxy and CoreDNS cannot be recreated while it is down.",
	risk.BlocksLeases:                   "A webhook that fails closed matches leases in kube-system or kube-node-lease: nodes and leader election fail while it is down.",
	risk.BlocksNodes:                    "A webhook that fails closed matches nodes or nodes/status: kubelets cannot report while it is down.",
	risk.BlocksAuth:                     "A webhook that fails closed matches TokenReviews, SubjectAccessReviews or CertificateSigningRequests.",
	risk.SelfDeadlock:                   "A webhook that fails closed matches CREATE of its own pods: once they are gone, they never come back.",
	risk.NoExclusion:                    "A webhook that fails closed matches every resource or every pod with nothing to exclude kube-system or its own namespace.",
	risk.SingleReplica:                  "One backend pod, or every backend pod on one node: a rollout or a drain leaves the call-out with no backend.",
	risk.StackedTimeouts:                "The webhooks on one request path can hold it past the 10 s in which leases must be renewed.",
	risk.FailOpenSecurity:               "failurePolicy Ignore: writes pass unchecked while the webhook is down.",
	risk.InsecureSkipTLSVerify:          "An APIService the API server calls without verifying its certificate.",
	risk.InvalidConfiguration:           "The API server would reject the configuration, or it can never be called.",
	risk.NetworkPolicyDenies:            "A NetworkPolicy shuts the API server out of the backend pods.",
	risk.CABundleExpiring:               "A CA in the caBundle has expired or expires soon: calls then fail their TLS handshake.",
	risk.NoPodDisruptionBudget:          "No PodDisruptionBudget protects the backend pods of a call-out that fails closed.",
	risk.PodDisruptionBudgetBlocksDrain: "A PodDisruptionBudget of the backend pods never allows an eviction: drains hang.",
}

// sarifLevel is a severity as SARIF names levels.
func sarifLevel(s risk.Severity) string {
	switch s {
	case risk.Critical:
		return "error"
	case risk.Warning:
		return "warning"
	}
	return "note"
}

// lintSARIF is a SARIF 2.1.0 log of one run: a rule per risk kind found,
// a result per finding at the document its object was read from, and the
// input errors as notifications.
func lintSARIF(res lintResult) map[string]any {
	var kinds []risk.Kind
	for _, f := range res.Findings {
		if !slices.Contains(kinds, f.Kind) {
			kinds = append(kinds, f.Kind)
		}
	}
	slices.Sort(kinds)
	rules := []any{}
	for _, k := range kinds {
		help := ruleHelp[k]
		if help == "" {
			help = string(k)
		}
		rules = append(rules, map[string]any{"id": string(k), "name": string(k), "shortDescription": map[string]any{"text": help}})
	}
	results := []any{}
	for _, f := range res.Findings {
		r := map[string]any{"ruleId": string(f.Kind), "ruleIndex": slices.Index(kinds, f.Kind), "level": sarifLevel(f.Severity),
			"message": map[string]any{"text": fmt.Sprintf("%s: %s Fix: %s", f.Webhook, f.Detail, f.Fix)}}
		if f.Where.file != "" && f.Where.file != "-" {
			r["locations"] = []any{map[string]any{"physicalLocation": map[string]any{
				"artifactLocation": map[string]any{"uri": sarifURI(f.Where.file)}, "region": map[string]any{"startLine": f.Where.line}}}}
		}
		results = append(results, r)
	}
	notes := []any{}
	for _, e := range res.Errors {
		notes = append(notes, map[string]any{"level": "error", "message": map[string]any{"text": e.Error()}})
	}
	return map[string]any{
		"$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool":        map[string]any{"driver": map[string]any{"name": "hookscope", "version": versionString(), "informationUri": "https://github.com/hookscope/hookscope", "rules": rules}},
			"results":     results,
			"invocations": []any{map[string]any{"executionSuccessful": len(res.Errors) == 0, "toolExecutionNotifications": notes}},
		}},
	}
}

// sarifURI is a file path as a relative URI reference (forward slashes;
// code scanning resolves it against the repository's root).
func sarifURI(path string) string {
	u := (&url.URL{Path: filepath.ToSlash(filepath.Clean(path))}).String()
	return strings.TrimPrefix(u, "./")
}
