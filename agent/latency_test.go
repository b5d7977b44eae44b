//go:build linux

package agent

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/hookscope/hookscope/bpf/handshake"
)

// TestJudgeLatency: an answer slower than the threshold is SlowResponse;
// one at timeoutSeconds, or so close to it that it is what the backend sent
// as the API server gave up, is WebhookTimeout; a fast one is nothing.
func TestJudgeLatency(t *testing.T) {
	backend := netip.MustParseAddrPort("10.0.0.2:8443")
	for _, tc := range []struct {
		latency time.Duration
		want    FailureClass
	}{
		{100 * time.Millisecond, ""},
		{1500 * time.Millisecond, SlowResponse},
		{1999600 * time.Microsecond, WebhookTimeout}, // seen in a game day: the close after the deadline
		{2 * time.Second, WebhookTimeout},
		{2100 * time.Millisecond, WebhookTimeout},
	} {
		sink := &recordSink{}
		a := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, nil, sink)
		w := Webhook{Ref: WebhookRef{Kind: "Validating", Configuration: "c", Name: "v.example.com"}, FailurePolicy: "Fail", TimeoutSeconds: 2}
		a.webhooks[w.Ref] = w
		a.judgeLatency(w.Ref, handshake.Event{Kind: handshake.KindResponse, Server: backend,
			Client: netip.MustParseAddrPort("192.0.2.2:40000"), Time: time.Now(), Latency: tc.latency})
		var got FailureClass
		if len(sink.got) > 0 {
			got = sink.got[0].Class
		}
		if got != tc.want {
			t.Errorf("answer after %s of timeoutSeconds 2: %q, want %q", tc.latency, got, tc.want)
		}
	}
}
