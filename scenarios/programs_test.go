//go:build linux

package scenarios

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAgentReportsItsPrograms: the game day's agent, as deployed, says on
// /metrics which eBPF programs this kernel took: the TC handshake program
// and one program per TCP tracepoint.
func TestAgentReportsItsPrograms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	scrape, err := lab.Agent.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := `hookscope_bpf_program{program="handshake",tracepoint="tc"} 1`; !strings.Contains(scrape, want) {
		t.Errorf("the agent's /metrics lacks %s", want)
	}
	tcp := regexp.MustCompile(`(?m)^hookscope_bpf_program\{program="[a-z_]+",tracepoint="tcp_[a-z_]+"\} 1$`)
	if !tcp.MatchString(scrape) {
		t.Errorf("the agent's /metrics names no loaded TCP tracepoint program:\n%s", grepLines(scrape, "hookscope_bpf_program"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
