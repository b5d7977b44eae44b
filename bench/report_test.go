//go:build linux

package bench

import (
	"strings"
	"testing"
)

// TestKernelGoalsInReport: the eBPF table judges each tracepoint's rejected
// path by its cost over the empty program's floor (and leaves the webhook
// path to the per-call goals), and the bulk table judges the TC program per
// packet.
func TestKernelGoalsInReport(t *testing.T) {
	r := &Report{
		BPF: []ProgramCost{
			{Program: "tp_btf/inet_sock_set_state", Path: "rejected", NsPerEvent: 60, Events: 100},
			{Program: "tp_btf/tcp_send_reset", Path: "rejected", NsPerEvent: 150, Events: 100},
			{Program: "tp_btf/inet_sock_set_state", Path: "webhook", NsPerEvent: 700, Events: 100},
		},
		TracepointFloor: []ProgramCost{
			{Program: "tp_btf/inet_sock_set_state", Path: "empty_program", NsPerEvent: 50},
			{Program: "tp_btf/tcp_send_reset", Path: "empty_program", NsPerEvent: 90},
		},
		Throughput: &Throughput{Runs: 2, Bytes: 1 << 20, Programs: []BulkCost{{Program: "handshake", Packets: 100, NsPerEvent: 280, WallShare: 0.02}}},
	}
	md := r.Markdown()
	for _, want := range []string{
		"| tp_btf/inet_sock_set_state | rejected | 60.0 | 100 | 50.0 | 10.0 | <= 15 ns over the floor: met (0.67) |",
		"| tp_btf/tcp_send_reset | rejected | 150.0 | 100 | 90.0 | 60.0 | <= 15 ns over the floor: MISSED (4.00) |",
		"| tp_btf/inet_sock_set_state | webhook | 700.0 | 100 | 50.0 | 650.0 | - |",
		"| handshake | 100 | 280.0 | 2.00% | <= 50 ns: MISSED (5.60) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}
