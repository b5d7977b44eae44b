package verify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Where the things under test live, relative to this package.
const (
	chartDir      = "../chart/hookscope"
	baseDir       = "../base"
	monitoringDir = "../monitoring"
)

// The kustomize base is the chart rendered for this release in this
// namespace, with namespace.create=true.
const (
	baseRelease   = "hookscope"
	baseNamespace = "hookscope"
	// baseAccount is the agent's ServiceAccount in the base.
	baseAccount = "hookscope-agent"
)

// kubeVersion is the Kubernetes version the chart is rendered and linted
// for: that of the local cluster's API server (tools/build.sh).
var kubeVersion = chartutil.KubeVersion{Version: "v1.34.4", Major: "1", Minor: "34"}

// helmLabels are the labels only a Helm release can know (chart version,
// managing tool); plain manifests leave them out.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}

// renderChart renders the chart as `helm template` does (client only, no
// cluster) and returns its objects and its NOTES.txt.
func renderChart(t *testing.T, release, namespace string, values map[string]any) ([]*unstructured.Unstructured, string) {
	t.Helper()
	objs, notes, err := render(release, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs, notes
}

func render(release, namespace string, values map[string]any) ([]*unstructured.Unstructured, string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", fmt.Errorf("loading chart %s: %w", chartDir, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.ClientOnly = true
	install.DryRun = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.KubeVersion = &kubeVersion
	rel, err := install.Run(chrt, values)
	if err != nil {
		return nil, "", fmt.Errorf("rendering chart %s: %w", chartDir, err)
	}
	objs, err := decodeObjects([]byte(rel.Manifest))
	if err != nil {
		return nil, "", fmt.Errorf("reading the rendered chart: %w", err)
	}
	return objs, rel.Info.Notes, nil
}

// buildBase returns the kustomize base's objects, built by kubectl's
// kustomize (the one `kubectl apply -k` uses).
func buildBase(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, err := kubectl(nil, "kustomize", baseDir)
	if err != nil {
		t.Fatalf("building %s: %v", baseDir, err)
	}
	objs, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("reading the built %s: %v", baseDir, err)
	}
	return objs
}

// kubectl runs kubectl with stdin and returns its standard output; the error
// carries its standard error.
func kubectl(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("kubectl", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// decodeObjects reads a multi-document YAML stream; empty documents (a
// template rendered to nothing) are skipped.
func decodeObjects(manifest []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the object of that kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// mustFind is find that fails the test when there is no such object.
func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("no %s %s among %s", kind, name, describe(objs))
	}
	return o
}

// describe lists the objects as Kind/name.
func describe(objs []*unstructured.Unstructured) string {
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	return strings.Join(names, ", ")
}

// readFile reads a file the test needs.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
