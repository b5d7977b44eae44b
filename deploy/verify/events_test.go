package verify

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestChartEventsCanBeTurnedOff: by default the agent records Events (its
// ClusterRole may create and patch them, and no flag turns it off); with
// events.enabled=false the chart drops that rule and passes
// --record-events=false, leaving a ClusterRole that only reads.
func TestChartEventsCanBeTurnedOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		on     bool
	}{
		{"default", nil, true},
		{"events.enabled=false", map[string]any{"events": map[string]any{"enabled": false}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := renderChart(t, baseRelease, baseNamespace, tc.values)
			var role rbacv1.ClusterRole
			fromUnstructured(t, mustFind(t, objs, "ClusterRole", "hookscope-agent"), &role)
			writes := 0
			for _, r := range role.Rules {
				if isEventsRule(r) && slices.Equal(r.Verbs, []string{"create", "patch"}) {
					writes++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.on]; writes != want {
				t.Errorf("%d rules granting create and patch on Events, want %d: %v", writes, want, role.Rules)
			}
			if off := slices.Contains(agentArgsOf(t, objs), "--record-events=false"); off == tc.on {
				t.Errorf("agent args %v: --record-events=false passed %v, want %v", agentArgsOf(t, objs), off, !tc.on)
			}
		})
	}
}
