//go:build linux

package tcpstate

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// TestVerifierBudget loads the programs (the variants this kernel takes)
// with verifier statistics and fails
// when one needs more than a quarter of the kernel's one-million
// instruction budget, so a change that explodes the state space is caught
// here rather than on a customer's kernel.
func TestVerifierBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	tr, err := load(nil, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	if err != nil {
		t.Fatalf("loading: %+v", err)
	}
	defer tr.Close()
	re := regexp.MustCompile(`processed (\d+) insns`)
	for _, v := range tr.Variants() {
		if !v.Loaded {
			t.Errorf("%s: no program loaded (%s)", v.Tracepoint, v.Why)
			continue
		}
		name, p := v.Program, tr.progs[v.Tracepoint]
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
