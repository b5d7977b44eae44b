//go:build linux

package handshake

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// TestVerifierBudget loads the programs with verifier statistics and fails
// when either needs more than a quarter of the kernel's one-million
// instruction budget, so a parser change that explodes the state space is
// caught here rather than on a customer's kernel.
func TestVerifierBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	spec, err := loadHandshake()
	if err != nil {
		t.Fatal(err)
	}
	var objs handshakeObjects
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		t.Fatalf("loading: %+v", err)
	}
	defer objs.Close()
	re := regexp.MustCompile(`processed (\d+) insns`)
	for name, p := range map[string]*ebpf.Program{"handshake": objs.Handshake} {
		m := re.FindStringSubmatch(p.VerifierLog)
		if m == nil {
			t.Fatalf("%s: no statistics in the verifier log:\n%s", name, p.VerifierLog)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: verifier processed %d instructions", name, n)
		if n > 250000 {
			t.Errorf("%s: verifier processed %d instructions, budget 250000", name, n)
		}
	}
}
