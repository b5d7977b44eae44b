// Package layout holds the tests that keep hookscope's packages along the
// data flow (docs/ARCHITECTURE.md): kernel -> bpf -> dataplane and the
// other producers -> findings -> otel and api, wired by the agent.
package layout

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/hookscope/hookscope/"

// layer is each package's place in the data flow. A package may import
// only packages of a lower layer, plus those listed in allowed.
var layer = map[string]int{
	"callout":  0, // the model of what the API server calls out to
	"findings": 1, // the store every producer hands observations to
	// Producers: each turns one source into observations.
	"probe": 2, "inventory": 2, "dataplane": 2, "apisignals": 2, "risk": 2, "impact": 2,
	// Readers of findings: they never see a producer or the agent.
	"otel": 2, "api": 2, "events": 2,
	// The opt-in guard acts on findings; the agent runs it.
	"guard":                 2,
	"agent":                 3, // the orchestrator
	"cmd/internal/agentcmd": 4, // `hookscope agent`: wires the agent's parts
	"cmd/hookscope":         5,
	"cmd/hookscope-agent":   5,
}

// sameLayerForbidden: no producer (or reader) imports another of its layer.
const sameLayerForbidden = true

// harness packages drive the binary and read its API: they import none of
// the agent's packages.
var harness = []string{"chaos", "scenarios"}

type pkg struct {
	ImportPath string
	Imports    []string
	Dir        string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func short(path string) string { return strings.TrimPrefix(path, module) }

// TestImportsFollowTheDataFlow fails when a package imports upward against
// the data flow: a producer the agent or another producer, otel or the API
// a producer or the agent, the game-day harness any of the agent's packages.
func TestImportsFollowTheDataFlow(t *testing.T) {
	agentPkgs := map[string]bool{}
	for p := range layer {
		agentPkgs[p] = true
	}
	for _, p := range listPackages(t) {
		from := short(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := short(imp)
			if strings.HasPrefix(from, "bpf/") && !strings.HasPrefix(to, "bpf/") {
				t.Errorf("%s imports %s: the BPF packages know nothing of Kubernetes or findings", from, to)
			}
			for _, h := range harness {
				if (from == h || strings.HasPrefix(from, h+"/")) && agentPkgs[to] {
					t.Errorf("%s imports %s: the game day drives the binary and reads its API, never its packages", from, to)
				}
			}
			lf, okf := layer[from]
			lt, okt := layer[to]
			if !okf || !okt {
				continue
			}
			if lt > lf || (sameLayerForbidden && lt == lf && lf >= 2) {
				t.Errorf("%s (layer %d) imports %s (layer %d): against the data flow", from, lf, to, lt)
			}
		}
	}
}

// notInTheAgent are packages the agent binary must not link: client-go's
// typed clientset scheme registers every API group Kubernetes has (about
// 22 MB of binary, measured), and the informer factory and leader election
// bring it. internal/kube reaches the API server without them.
var notInTheAgent = []string{
	"k8s.io/client-go/kubernetes/scheme",
	"k8s.io/client-go/informers",
	"k8s.io/client-go/tools/leaderelection",
	"k8s.io/cli-runtime/pkg/genericclioptions",
}

// TestAgentBinaryLinksOnlyWhatItReads fails when the agent's binary
// (./cmd/hookscope-agent, the image's) depends on one of notInTheAgent,
// naming the chain of imports that brings it.
func TestAgentBinaryLinksOnlyWhatItReads(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"cmd/hookscope-agent").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	importedBy := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if _, seen := importedBy[imp]; !seen {
				importedBy[imp] = f[0]
			}
		}
	}
	for _, bad := range notInTheAgent {
		if _, ok := importedBy[bad]; !ok {
			continue
		}
		chain := []string{bad}
		for p := importedBy[bad]; p != "" && len(chain) < 20; p = importedBy[p] {
			chain = append(chain, p)
		}
		t.Errorf("the agent links %s, through %s", bad, strings.Join(chain, " <- "))
	}
}

// Size limits for the code we live in.
const (
	maxFileLines = 600
	maxFuncLines = 80
)

// TestSizes fails on a non-generated, non-test Go file over 600 lines or a
// function over 80: split it along its concerns.
func TestSizes(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, name := range p.GoFiles {
			if strings.HasSuffix(name, "_bpfel.go") || strings.HasSuffix(name, "_bpfeb.go") {
				continue // bpf2go's
			}
			path := filepath.Join(p.Dir, name)
			fs := token.NewFileSet()
			f, err := parser.ParseFile(fs, path, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if n := fs.Position(f.End()).Line; n > maxFileLines {
				t.Errorf("%s/%s: %d lines, over %d", short(p.ImportPath), name, n, maxFileLines)
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				if n := fs.Position(fd.End()).Line - fs.Position(fd.Pos()).Line + 1; n > maxFuncLines {
					t.Errorf("%s/%s: func %s is %d lines, over %d", short(p.ImportPath), name, fd.Name.Name, n, maxFuncLines)
				}
			}
		}
	}
}
