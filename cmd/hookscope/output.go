package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/printers"
)

// The shapes of -o json and -o yaml: what hookscope prints, not objects
// any API server serves. kind and apiVersion let kubectl's printers (and
// jq) read them as they read kubectl's output.
const outputAPIVersion = "hookscope.dev/v1alpha1"

// output is a parsed -o: kubectl's formats, printed with kubectl's
// printers.
type output struct {
	format  string // table, wide, json, yaml, name, jsonpath, or a command's own (text)
	printer printers.ResourcePrinter
}

// outputHelp is the -o flag's help for the formats the command takes.
func outputHelp(formats ...string) string {
	return "output format: " + strings.Join(formats, ", ") + ", jsonpath=TEMPLATE or jsonpath-file=FILE"
}

// parseOutput reads -o's value: one of formats, or a JSONPath template
// (jsonpath=..., jsonpath-file=...).
func parseOutput(value string, formats ...string) (*output, error) {
	name, arg, hasArg := strings.Cut(value, "=")
	switch {
	case name == "json" && !hasArg:
		return &output{format: name, printer: &printers.JSONPrinter{}}, nil
	case name == "yaml" && !hasArg:
		return &output{format: name, printer: &printers.YAMLPrinter{}}, nil
	case name == "jsonpath" || name == "jsonpath-file":
		if arg == "" {
			return nil, fmt.Errorf("-o %s needs a template: -o %s='{.items[*].name}'", name, name)
		}
		return jsonPathOutput(name, arg)
	case !hasArg && slices.Contains(formats, name):
		return &output{format: name}, nil
	}
	return nil, fmt.Errorf("-o %q: want %s", value, strings.TrimPrefix(outputHelp(append(formats, "json", "yaml")...), "output format: "))
}

func jsonPathOutput(name, arg string) (*output, error) {
	tmpl := arg
	if name == "jsonpath-file" {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("-o jsonpath-file: %w", err)
		}
		tmpl = string(b)
	}
	p, err := printers.NewJSONPathPrinter(tmpl)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", name, err)
	}
	p.AllowMissingKeys(true) // as kubectl's --allow-missing-template-keys
	return &output{format: "jsonpath", printer: p}, nil
}

// structured reports whether the output is an object (json, yaml,
// jsonpath) rather than text.
func (o *output) structured() bool { return o.printer != nil }

// printObject prints v, with kind and apiVersion, through the printer.
func (o *output) printObject(w io.Writer, kind string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	obj := map[string]any{}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetAPIVersion(outputAPIVersion)
	u.SetKind(kind)
	return o.printer.PrintObj(u, w)
}

// printTable prints a table as kubectl does (wide: the columns of
// priority 1 too).
func printTable(w io.Writer, t *metav1.Table, wide bool) error {
	return printers.NewTablePrinter(printers.PrintOptions{Wide: wide}).PrintObj(t, w)
}
