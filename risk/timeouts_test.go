package risk_test

import (
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/hookscope/hookscope/risk"
)

// TestStackedTimeoutsNameTheirOwnStack: under matchPolicy Exact, leases at
// v1 and at v1beta1 are two stacks that read the same ("UPDATE
// leases.coordination.k8s.io in ..."). Each webhook's detail must list
// its own stack, on every run (the sentence used to be shared by that
// text, and map order picked which stack it described).
func TestStackedTimeoutsNameTheirOwnStack(t *testing.T) {
	leases := func(v string) []admissionv1.RuleWithOperations {
		return []admissionv1.RuleWithOperations{rule("UPDATE", "coordination.k8s.io", "leases", v)}
	}
	vwcs, mwcs := configs([]testHook{
		{name: "v1-a", mutating: true, exact: true, timeout: 6, rules: leases("v1")},
		{name: "v1-b", mutating: true, exact: true, timeout: 6, rules: leases("v1")},
		{name: "beta-a", mutating: true, exact: true, timeout: 6, rules: leases("v1beta1")},
		{name: "beta-b", mutating: true, exact: true, timeout: 7, rules: leases("v1beta1")},
	})
	var first string
	for run := range 20 {
		got := risk.Analyze(vwcs, mwcs, nil, nil)
		n := 0
		for _, r := range got {
			if r.Kind != risk.StackedTimeouts {
				continue
			}
			n++
			if !strings.Contains(r.Detail, r.Webhook.String()+" ") {
				t.Fatalf("run %d: %s's stack does not name it: %s", run, r.Webhook, r.Detail)
			}
		}
		if n != 4 {
			t.Fatalf("run %d: %d StackedTimeouts risks, want 4: %+v", run, n, got)
		}
		if s := fmt.Sprint(got); run == 0 {
			first = s
		} else if s != first {
			t.Fatalf("run %d differs from run 0:\n%s\n%s", run, s, first)
		}
	}
}
