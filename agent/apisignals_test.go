//go:build linux

// Linux only because the integration test runs chaos.Local, which is.

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/hookscope/hookscope/chaos"
)

const sigURL = "https://svc.ns.svc:443/validate?timeout=5s"

// sigCallFailed is the client error of a fail-closed call whose cause is cause.
func sigCallFailed(cause string) string {
	return `Internal error occurred: failed calling webhook "vpod.x.hookscope.dev": failed to call webhook: Post "` + sigURL + `": ` + cause
}

// sigFailureCases are the texts the API server writes (from the seed
// article and a v1.34.4 kube-apiserver) and what they mean. Each input is
// also a seed of FuzzParseWebhookFailure (testdata/fuzz).
var sigFailureCases = []struct {
	name      string
	msg       string
	ok        bool
	want      WebhookFailure // Detail is checked with detailHas
	detailHas string
}{
	{
		name: "seed article expired certificate",
		msg:  `failed calling webhook "mtargetgroupbinding.elbv2.k8s.aws": Post "https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-elbv2-k8s-aws-v1beta1-targetgroupbinding?timeout=30s": x509: certificate has expired or is not yet valid: current time 2022-03-03T07:37:16Z is after 2022-02-26T11:24:26Z`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mtargetgroupbinding.elbv2.k8s.aws",
			URL:     "https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-elbv2-k8s-aws-v1beta1-targetgroupbinding?timeout=30s",
			Class:   CertExpired,
		},
		detailHas: "current time 2022-03-03T07:37:16Z is after 2022-02-26T11:24:26Z",
	},
	{
		name:      "certificate not yet valid",
		msg:       sigCallFailed(`tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2022-02-20T07:37:16Z is before 2022-02-26T11:24:26Z`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: CertNotYetValid},
		detailHas: "is before",
	},
	{
		name: "seed article DaemonSet FailedCreate, service not found",
		msg:  `Error creating: Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": failed to call webhook: Post "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s": service "webhook-service" not found`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mpod.elbv2.k8s.aws",
			URL:     "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s",
			Class:   ServiceNotFound,
		},
		detailHas: `service "webhook-service" not found`,
	},
	{
		name:      "no endpoints",
		msg:       sigCallFailed(`no endpoints available for service "svc"`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: NoEndpoints},
		detailHas: `no endpoints available for service "svc"`,
	},
	{
		name:      "unknown authority",
		msg:       sigCallFailed(`tls: failed to verify certificate: x509: certificate signed by unknown authority`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: UnknownAuthority},
		detailHas: "x509: certificate signed by unknown authority",
	},
	{
		name:      "hostname mismatch",
		msg:       sigCallFailed(`tls: failed to verify certificate: x509: certificate is valid for a.b.svc, not c.d.svc`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: HostnameMismatch},
		detailHas: "not c.d.svc",
	},
	{
		name:      "connection refused",
		msg:       sigCallFailed(`dial tcp 10.0.0.7:8443: connect: connection refused`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: ConnectionRefused},
		detailHas: "connection refused",
	},
	{
		name:      "connection reset",
		msg:       sigCallFailed(`read tcp 10.0.0.1:51234->10.0.0.7:8443: read: connection reset by peer`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: ConnectionRefused},
		detailHas: "reset the connection",
	},
	{
		name:      "no route to host",
		msg:       sigCallFailed(`dial tcp 10.0.0.7:8443: connect: no route to host`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: ConnectionRefused},
		detailHas: "no route to the backend",
	},
	{
		name:      "context deadline exceeded",
		msg:       sigCallFailed(`context deadline exceeded`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: WebhookTimeout},
		detailHas: "timeoutSeconds",
	},
	{
		name:      "client timeout",
		msg:       sigCallFailed(`net/http: request canceled (Client.Timeout exceeded while awaiting headers)`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: WebhookTimeout},
		detailHas: "Client.Timeout exceeded",
	},
	{
		name:      "dial i/o timeout",
		msg:       sigCallFailed(`dial tcp 10.0.0.7:8443: i/o timeout`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: WebhookTimeout},
		detailHas: "i/o timeout",
	},
	{
		name:      "TLS handshake timeout",
		msg:       sigCallFailed(`net/http: TLS handshake timeout`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: HandshakeTimeout},
		detailHas: "TLS handshake timeout",
	},
	{
		name:      "client certificate refused",
		msg:       sigCallFailed(`remote error: tls: bad certificate`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: sigURL, Class: TLSHandshakeFailed},
		detailHas: "bad certificate",
	},
	{
		name:      "invalid response: no class",
		msg:       `Internal error occurred: failed calling webhook "vpod.x.hookscope.dev": received invalid webhook response: expected response.uid="1", got ""`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev"},
		detailHas: "received invalid webhook response",
	},
	{
		name:      "no further details",
		msg:       `Internal error occurred: failed calling webhook "vpod.x.hookscope.dev"; no further details available`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev"},
		detailHas: "no further details available",
	},
	{
		name: "apiserver log, failing closed",
		msg:  `W1125 02:45:05.657908 23852 dispatcher.go:225] Failed calling webhook, failing closed mpod.x.hookscope.dev: failed calling webhook "mpod.x.hookscope.dev": failed to call webhook: Post "https://hook-svc.hooks.svc:443/mutate?timeout=5s": service "hook-svc" not found`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mpod.x.hookscope.dev",
			URL:     "https://hook-svc.hooks.svc:443/mutate?timeout=5s",
			Class:   ServiceNotFound,
		},
		detailHas: `service "hook-svc" not found`,
	},
	{
		name: "apiserver log, failing open",
		msg:  `W1125 02:45:05.657908 23852 dispatcher.go:205] Failed calling webhook, failing open vpod.x.hookscope.dev: failed calling webhook "vpod.x.hookscope.dev": failed to call webhook: Post "https://hook-svc.hooks.svc:443/validate?timeout=5s": no endpoints available for service "hook-svc"`,
		ok:   true,
		want: WebhookFailure{
			Webhook:  "vpod.x.hookscope.dev",
			URL:      "https://hook-svc.hooks.svc:443/validate?timeout=5s",
			Class:    NoEndpoints,
			FailOpen: true,
		},
		detailHas: `no endpoints available for service "hook-svc"`,
	},
	{
		name: "apiserver log, fail open's Unhandled Error line",
		msg:  `E1125 02:45:05.657990 23852 dispatcher.go:213] "Unhandled Error" err="failed calling webhook \"vpod.x.hookscope.dev\": failed to call webhook: Post \"https://hook-svc.hooks.svc:443/validate?timeout=5s\": dial tcp 10.0.1.5:8443: connect: no route to host" logger="UnhandledError"`,
		ok:   true,
		want: WebhookFailure{
			Webhook:  "vpod.x.hookscope.dev",
			URL:      "https://hook-svc.hooks.svc:443/validate?timeout=5s",
			Class:    ConnectionRefused,
			FailOpen: true,
		},
		detailHas: "dial tcp 10.0.1.5:8443: connect: no route to host",
	},
	{
		name: "apiserver log, second fail-closed error of a request",
		msg:  `E1125 02:45:05.658001 23852 dispatcher.go:242] "Unhandled Error" err="Internal error occurred: failed calling webhook \"vpod.x.hookscope.dev\": failed to call webhook: Post \"https://hook-svc.hooks.svc:443/validate?timeout=5s\": context deadline exceeded" logger="UnhandledError"`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "vpod.x.hookscope.dev",
			URL:     "https://hook-svc.hooks.svc:443/validate?timeout=5s",
			Class:   WebhookTimeout,
		},
		detailHas: "context deadline exceeded",
	},
	{
		name: "event aggregated by the recorder",
		msg:  `(combined from similar events): Error creating: Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": failed to call webhook: Post "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s": service "webhook-service" not found`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mpod.elbv2.k8s.aws",
			URL:     "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s",
			Class:   ServiceNotFound,
		},
	},
	// Not failed calls.
	{name: "explicit denial", msg: `admission webhook "vpod.x.hookscope.dev" denied the request: pods must set resources`},
	{name: "denial quoting a failed call", msg: `Error creating: admission webhook "vpod.x.hookscope.dev" denied the request: policy: failed calling webhook "other.example.com": nope`},
	{name: "empty"},
	{name: "garbage", msg: "\x00\xff}{ failed calling webhook"},
	{name: "unterminated name", msg: `failed calling webhook "vpod.x.hookscope.dev`},
	{name: "empty name", msg: `failed calling webhook "": Post "https://a": connection refused`},
	{name: "name with a space", msg: `failed calling webhook "a b": context deadline exceeded`},
	{name: "unrelated warning", msg: `Back-off restarting failed container webhook in pod webhook-7d9c_hooks(5b1e)`},
	{name: "panic fail open has no call", msg: `W1125 02:45:05.657908 23852 dispatcher.go:150] Panic calling webhook, failing open vpod.x.hookscope.dev: runtime error`},
}

// sigCase returns the message of the named case.
func sigCase(t *testing.T, name string) string {
	t.Helper()
	for _, c := range sigFailureCases {
		if c.name == name {
			return c.msg
		}
	}
	t.Fatalf("no case %q", name)
	return ""
}

func TestParseWebhookFailure(t *testing.T) {
	for _, c := range sigFailureCases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ParseWebhookFailure(c.msg)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (got %+v)", ok, c.ok, got)
			}
			if !ok {
				if got != (WebhookFailure{}) {
					t.Errorf("not a failure but got %+v", got)
				}
				return
			}
			detail := got.Detail
			got.Detail = ""
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
			if !strings.Contains(detail, c.detailHas) {
				t.Errorf("Detail %q does not contain %q", detail, c.detailHas)
			}
		})
	}
}

func TestParseWebhookFailureBoundsWork(t *testing.T) {
	// A failed call beyond the first 64 KiB is not read.
	huge := strings.Repeat("x", sigMaxScan) + sigCallFailed("connection refused")
	if got, ok := ParseWebhookFailure(huge); ok {
		t.Errorf("read past the cap: %+v", got)
	}
	// A cause longer than the Detail cap is cut.
	long := sigCallFailed("connection refused " + strings.Repeat("y", 10*sigMaxDetail))
	got, ok := ParseWebhookFailure(long)
	if !ok || got.Class != ConnectionRefused || len(got.Detail) > sigMaxDetail {
		t.Errorf("long cause: ok=%v class=%s len(Detail)=%d", ok, got.Class, len(got.Detail))
	}
	big := strings.Repeat(`failed calling webhook \"`, 1<<20)
	start := time.Now()
	for range 100 {
		ParseWebhookFailure(big)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("100 parses of a 25 MiB input took %s", d)
	}
}

func FuzzParseWebhookFailure(f *testing.F) {
	for _, c := range sigFailureCases {
		f.Add(c.msg)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		got, ok := ParseWebhookFailure(msg)
		if !ok {
			if got != (WebhookFailure{}) {
				t.Fatalf("not a failure but got %+v", got)
			}
			return
		}
		if got.Webhook == "" || len(got.Webhook) > sigMaxName || strings.ContainsAny(got.Webhook, "\" \t\\\n") {
			t.Fatalf("bad webhook name %q", got.Webhook)
		}
		if len(got.Detail) > sigMaxDetail {
			t.Fatalf("Detail is %d bytes", len(got.Detail))
		}
		if again, _ := ParseWebhookFailure(msg); again != got {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
		// Whatever follows the first line does not change the answer.
		if !strings.Contains(msg, "\n") && len(msg) < sigMaxScan {
			if more, _ := ParseWebhookFailure(msg + "\nfailed calling webhook \"other\": connection refused"); more != got {
				t.Fatalf("a second line changed the answer: %+v then %+v", got, more)
			}
		}
	})
}

// sigMetricsSample is what a v1.34 API server serves after failed calls of
// a fail-closed validating webhook (vpod), a fail-open mutating one (mpod),
// a healthy one (ok) and a denial, among families ParseWebhookMetrics skips.
const sigMetricsSample = `# HELP apiserver_admission_controller_admission_duration_seconds [STABLE] Admission controller latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).
# TYPE apiserver_admission_controller_admission_duration_seconds histogram
apiserver_admission_controller_admission_duration_seconds_bucket{name="NamespaceLifecycle",operation="CREATE",rejected="false",type="validate",le="0.005"} 12
apiserver_admission_controller_admission_duration_seconds_bucket{name="NamespaceLifecycle",operation="CREATE",rejected="false",type="validate",le="+Inf"} 12
apiserver_admission_controller_admission_duration_seconds_sum{name="NamespaceLifecycle",operation="CREATE",rejected="false",type="validate"} 0.000412
apiserver_admission_controller_admission_duration_seconds_count{name="NamespaceLifecycle",operation="CREATE",rejected="false",type="validate"} 12
# HELP apiserver_admission_webhook_admission_duration_seconds [STABLE] Admission webhook latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).
# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit",le="0.005"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit",le="0.025"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit",le="+Inf"} 2
apiserver_admission_webhook_admission_duration_seconds_sum{name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit"} 0.0021
apiserver_admission_webhook_admission_duration_seconds_count{name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit"} 2
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="0.005"} 3
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="0.025"} 3
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="+Inf"} 3
apiserver_admission_webhook_admission_duration_seconds_sum{name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 0.0009
apiserver_admission_webhook_admission_duration_seconds_count{name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 3
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating",le="0.005"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating",le="0.025"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating",le="+Inf"} 1
apiserver_admission_webhook_admission_duration_seconds_sum{name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating"} 0.0004
apiserver_admission_webhook_admission_duration_seconds_count{name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating",le="0.025"} 4
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating",le="+Inf"} 5
apiserver_admission_webhook_admission_duration_seconds_sum{name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating"} 0.09
apiserver_admission_webhook_admission_duration_seconds_count{name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating"} 5
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="0.025"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating",le="+Inf"} 1
apiserver_admission_webhook_admission_duration_seconds_sum{name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 0.011
apiserver_admission_webhook_admission_duration_seconds_count{name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 1
# HELP apiserver_admission_webhook_fail_open_count [ALPHA] Admission webhook fail open count, identified by name and broken out for each admission type (validating or admit).
# TYPE apiserver_admission_webhook_fail_open_count counter
apiserver_admission_webhook_fail_open_count{name="mpod.x.hookscope.dev",type="admit"} 2
# HELP apiserver_admission_webhook_rejection_count [ALPHA] Admission webhook rejection count, identified by name and broken out for each admission type (validating or admit) and operation. Additional labels specify an error type (calling_webhook_error or apiserver_internal_error if an error occurred; no_error otherwise) and optionally a non-zero rejection code if the webhook rejects the request with an HTTP status code (honored by the apiserver when the code is greater or equal to 400). Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.
# TYPE apiserver_admission_webhook_rejection_count counter
apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vpod.x.hookscope.dev",operation="CREATE",rejection_code="503",type="validating"} 3
apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vpod.x.hookscope.dev",operation="UPDATE",rejection_code="503",type="validating"} 1
apiserver_admission_webhook_rejection_count{error_type="no_error",name="ok.x.hookscope.dev",operation="CREATE",rejection_code="403",type="validating"} 1
# HELP apiserver_admission_webhook_request_total [ALPHA] Admission webhook request total, identified by name and broken out for each admission type (validating or admit) and operation. Additional labels specify whether the request was rejected or not and an HTTP status code. Codes greater than 600 are truncated to 600, to keep the metrics cardinality bounded.
# TYPE apiserver_admission_webhook_request_total counter
apiserver_admission_webhook_request_total{code="0",name="mpod.x.hookscope.dev",operation="CREATE",rejected="false",type="admit"} 2
apiserver_admission_webhook_request_total{code="200",name="ok.x.hookscope.dev",operation="CREATE",rejected="false",type="validating"} 5
apiserver_admission_webhook_request_total{code="200",name="ok.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 1
apiserver_admission_webhook_request_total{code="503",name="vpod.x.hookscope.dev",operation="CREATE",rejected="true",type="validating"} 3
apiserver_admission_webhook_request_total{code="503",name="vpod.x.hookscope.dev",operation="UPDATE",rejected="true",type="validating"} 1
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 9
apiserver_request_total{code="500",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 4
`

func TestParseWebhookMetrics(t *testing.T) {
	got, err := ParseWebhookMetrics(strings.NewReader(sigMetricsSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]WebhookCallCounts{
		"vpod.x.hookscope.dev": {Rejections: 4, RejectedRequests: 4, CallingErrors: 4, DurationCount: 4, DurationSum: 0.0013},
		"mpod.x.hookscope.dev": {FailOpen: 2, DurationCount: 2, DurationSum: 0.0021},
		"ok.x.hookscope.dev":   {Rejections: 1, RejectedRequests: 1, DurationCount: 6, DurationSum: 0.101},
	}
	if len(got) != len(want) {
		t.Errorf("got %d webhooks, want %d: %+v", len(got), len(want), got)
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		// Sums of floats: compare to a tolerance.
		if math.Abs(g.DurationSum-w.DurationSum) > 1e-9 {
			t.Errorf("%s: DurationSum = %g, want %g", name, g.DurationSum, w.DurationSum)
		}
		g.DurationSum, w.DurationSum = 0, 0
		if g != w {
			t.Errorf("%s:\n got  %+v\n want %+v", name, g, w)
		}
	}
}

func TestParseWebhookMetricsErrors(t *testing.T) {
	cases := []struct{ name, body, errHas string }{
		{"html", "<html><body>Forbidden</body></html>\n", "line 1: not a comment or a metric sample"},
		{"bare word", "# HELP x y\ngarbage\n", "line 2: not a comment or a metric sample"},
		{"bad value", "apiserver_admission_webhook_fail_open_count{name=\"a\",type=\"admit\"} twelve\n", "line 1"},
		{"unterminated labels", "# TYPE apiserver_admission_webhook_rejection_count counter\napiserver_admission_webhook_rejection_count{name=\"a 1\n", "line 2"},
		{"bad value after skipped lines", "apiserver_request_total{code=\"200\"} 1\n# HELP x y\n\napiserver_admission_webhook_fail_open_count{name=\"a\"} x\n", "line 4: "},
		{"line too long", "apiserver_request_total " + strings.Repeat("1", sigMaxMetricLine+1) + "\n", "token too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseWebhookMetrics(strings.NewReader(c.body))
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("err = %v, want one containing %q", err, c.errHas)
			}
		})
	}
	// Without TYPE lines, the histogram's _count and _sum still count.
	untyped := "apiserver_admission_webhook_admission_duration_seconds_count{name=\"a\"} 3\napiserver_admission_webhook_admission_duration_seconds_sum{name=\"a\"} 0.5\n"
	got, err := ParseWebhookMetrics(strings.NewReader(untyped))
	if err != nil || got["a"].DurationCount != 3 || got["a"].DurationSum != 0.5 {
		t.Errorf("untyped histogram: %+v, %v", got, err)
	}
}

// BenchmarkParseWebhookMetrics reads a /metrics body the size of a small
// v1.34 API server's (2.3 MB), almost all of it families that are skipped.
func BenchmarkParseWebhookMetrics(b *testing.B) {
	var body strings.Builder
	body.WriteString("# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.\n# TYPE apiserver_request_duration_seconds histogram\n")
	for body.Len() < 2300<<10 {
		fmt.Fprintf(&body, "apiserver_request_duration_seconds_bucket{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"%d\"} %d\n", body.Len(), body.Len()/7)
	}
	body.WriteString(sigMetricsSample)
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseWebhookMetrics(strings.NewReader(body.String())); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseWebhookMetrics(f *testing.F) {
	f.Add([]byte(sigMetricsSample))
	f.Add([]byte("apiserver_admission_webhook_fail_open_count{name=\"a\",type=\"admit\"} 1\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseWebhookMetrics(bytes.NewReader(body))
		if err != nil {
			if got != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		if got == nil {
			t.Fatal("nil map without an error")
		}
		for name := range got {
			if name == "" {
				t.Fatal("a webhook without a name")
			}
		}
	})
}

// TestWriteSigFuzzCorpus writes the checked-in seed corpora from the tables
// above: HOOKSCOPE_WRITE_CORPUS=1 go test -run TestWriteSigFuzzCorpus ./agent/
func TestWriteSigFuzzCorpus(t *testing.T) {
	if os.Getenv("HOOKSCOPE_WRITE_CORPUS") == "" {
		t.Skip("set HOOKSCOPE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target, name, value string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + value + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slug := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(s))
	}
	for _, c := range sigFailureCases {
		write("FuzzParseWebhookFailure", slug(c.name), fmt.Sprintf("string(%q)", c.msg))
	}
	write("FuzzParseWebhookMetrics", "apiserver-sample", fmt.Sprintf("[]byte(%q)", sigMetricsSample))
	write("FuzzParseWebhookMetrics", "untyped-fail-open", fmt.Sprintf("[]byte(%q)", "apiserver_admission_webhook_fail_open_count{name=\"a\",type=\"admit\"} 1\n"))
	write("FuzzParseWebhookMetrics", "html", fmt.Sprintf("[]byte(%q)", "<html><body>Forbidden</body></html>\n"))
}

// sigRecorder collects reports.
type sigRecorder struct {
	mu  sync.Mutex
	got []SignalFailure
	ch  chan SignalFailure
}

func newSigRecorder() *sigRecorder { return &sigRecorder{ch: make(chan SignalFailure, 1024)} }

func (r *sigRecorder) report(f SignalFailure) {
	r.mu.Lock()
	r.got = append(r.got, f)
	r.mu.Unlock()
	select {
	case r.ch <- f:
	default:
	}
}

func (r *sigRecorder) all() []SignalFailure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SignalFailure(nil), r.got...)
}

// sigLogCounter counts log records by level.
type sigLogCounter struct {
	mu     sync.Mutex
	counts map[slog.Level]int
}

func (c *sigLogCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *sigLogCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[r.Level]++
	return nil
}
func (c *sigLogCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *sigLogCounter) WithGroup(string) slog.Handler      { return c }
func (c *sigLogCounter) count(l slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[l]
}

func TestAPISignalsMetrics(t *testing.T) {
	const closedLine = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vpod",operation="CREATE",rejection_code="503",type="validating"} %d` + "\n"
	const openLine = `apiserver_admission_webhook_fail_open_count{name="mpod",type="admit"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(closedLine, 5),                            // baseline: nothing
		fmt.Sprintf(closedLine, 5),                            // no change
		fmt.Sprintf(closedLine, 7) + fmt.Sprintf(openLine, 1), // vpod +2 closed, mpod appears with 1 (counts from 0)
		"error", // scrape fails
		"error", // still failing: not logged again
		fmt.Sprintf(closedLine, 7) + fmt.Sprintf(openLine, 4), // mpod +3 open
		fmt.Sprintf(closedLine, 1),                            // restart: a new baseline
		fmt.Sprintf(closedLine, 2) + fmt.Sprintf(openLine, 1), // vpod +1, mpod back from 0: +1
	}
	logs := &sigLogCounter{counts: map[slog.Level]int{}}
	rec := newSigRecorder()
	s := NewAPISignals(nil, time.Second, rec.report, slog.New(logs))
	i := 0
	s.fetch = func(context.Context) (io.ReadCloser, error) {
		b := bodies[i]
		i++
		if b == "error" {
			return nil, errors.New("the server has asked for the client to provide credentials")
		}
		return io.NopCloser(strings.NewReader(b)), nil
	}
	type rep struct {
		webhook  string
		count    int
		failOpen bool
	}
	want := [][]rep{
		nil,
		nil,
		{{"mpod", 1, true}, {"vpod", 2, false}},
		nil,
		nil,
		{{"mpod", 3, true}},
		nil,
		{{"mpod", 1, true}, {"vpod", 1, false}},
	}
	for step := range bodies {
		before := len(rec.all())
		s.scrape(context.Background())
		var got []rep
		for _, f := range rec.all()[before:] {
			if f.Source != "metrics" || f.Class != "" || f.Object != "" || f.At.IsZero() {
				t.Errorf("step %d: bad report %+v", step, f)
			}
			got = append(got, rep{f.Webhook, f.Count, f.FailOpen})
		}
		// Reports come from a map: order them.
		if len(got) == 2 && got[0].webhook > got[1].webhook {
			got[0], got[1] = got[1], got[0]
		}
		if fmt.Sprint(got) != fmt.Sprint(want[step]) {
			t.Errorf("step %d: reports %v, want %v", step, got, want[step])
		}
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings for two failed scrapes in a row, want 1", n)
	}
	if n := logs.count(slog.LevelInfo); n != 2 {
		t.Errorf("%d infos, want 2 (first scrape, recovery)", n)
	}
}

// TestAPISignalsSlowResponse: calls that succeed but take longer than the
// threshold on average are SlowResponse; fast calls, failed calls and a
// scrape with no calls are not.
func TestAPISignalsSlowResponse(t *testing.T) {
	const hist = `# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating",le="+Inf"} %[1]d
apiserver_admission_webhook_admission_duration_seconds_sum{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating"} %[2]g
apiserver_admission_webhook_admission_duration_seconds_count{name="slow.hookscope.dev",operation="CREATE",rejected="false",type="validating"} %[1]d
`
	const failed = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="slow.hookscope.dev",operation="CREATE",rejection_code="503",type="validating"} %d` + "\n"
	steps := []struct {
		body    string
		want    bool
		latency time.Duration
		count   int
	}{
		{fmt.Sprintf(hist, 10, 1.0), false, 0, 0},                           // baseline
		{fmt.Sprintf(hist, 14, 7.0), true, 1500 * time.Millisecond, 4},      // 4 calls, 6 s: 1.5 s each
		{fmt.Sprintf(hist, 14, 7.0), false, 0, 0},                           // no calls
		{fmt.Sprintf(hist, 24, 8.0), false, 0, 0},                           // 10 calls, 1 s: fast
		{fmt.Sprintf(hist, 26, 14.0) + fmt.Sprintf(failed, 1), false, 0, 0}, // slow, but a call failed: that is the finding
	}
	rec := newSigRecorder()
	s := NewAPISignals(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	var asked []string
	s.SetSlowThreshold(func(name string) time.Duration {
		asked = append(asked, name)
		return time.Second
	})
	i := 0
	s.fetch = func(context.Context) (io.ReadCloser, error) {
		b := steps[i].body
		i++
		return io.NopCloser(strings.NewReader(b)), nil
	}
	for n, st := range steps {
		before := len(rec.all())
		s.scrape(context.Background())
		var slow, healthy []SignalFailure
		for _, f := range rec.all()[before:] {
			switch f.Class {
			case SlowResponse:
				slow = append(slow, f)
			case Healthy:
				healthy = append(healthy, f)
			}
		}
		if wantHealthy := n == 3; (len(healthy) == 1) != wantHealthy || len(healthy) > 1 {
			t.Errorf("step %d: %d Healthy reports %+v, want one only after the slow webhook is fast again", n, len(healthy), healthy)
		}
		if got := len(slow) == 1; got != st.want || len(slow) > 1 {
			t.Fatalf("step %d: %d SlowResponse reports %+v, want %v", n, len(slow), slow, st.want)
		}
		if !st.want {
			continue
		}
		f := slow[0]
		if f.Webhook != "slow.hookscope.dev" || f.Latency != st.latency || f.Count != st.count || f.Source != "metrics" || f.FailOpen {
			t.Errorf("step %d: report %+v, want latency %s over %d calls", n, f, st.latency, st.count)
		}
		if !strings.Contains(f.Detail, "1.5s on average") {
			t.Errorf("step %d: detail %q does not give the mean latency", n, f.Detail)
		}
	}
	if len(asked) == 0 {
		t.Error("the threshold was never asked for")
	}
}

func TestAPISignalsEvents(t *testing.T) {
	rec := newSigRecorder()
	s := NewAPISignals(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	last := metav1.NewTime(time.Date(2026, 11, 25, 2, 45, 5, 0, time.UTC))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "kube-system", Name: "aws-node.1879", UID: types.UID("u1"), ResourceVersion: "10",
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		InvolvedObject: corev1.ObjectReference{Kind: "DaemonSet", Namespace: "kube-system", Name: "aws-node", UID: "ds"},
		Type:           corev1.EventTypeWarning,
		Reason:         "FailedCreate",
		Message:        sigCase(t, "seed article DaemonSet FailedCreate, service not found"),
		Count:          3,
		LastTimestamp:  last,
		Source:         corev1.EventSource{Component: "daemonset-controller"},
	}
	slim, err := sigSlimEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	se := slim.(*corev1.Event)
	if se.Message != ev.Message || se.ManagedFields != nil || se.Source.Component != "" {
		t.Errorf("slim event kept the wrong fields: %+v", se)
	}
	s.onEvent(se)
	s.onEvent(se) // a relist: same resourceVersion
	got := rec.all()
	if len(got) != 1 {
		t.Fatalf("got %d reports, want 1: %+v", len(got), got)
	}
	f := got[0]
	if f.Source != "event" || f.Object != "DaemonSet kube-system/aws-node" || f.Reason != "FailedCreate" ||
		f.Count != 3 || !f.At.Equal(last.Time) || f.Class != ServiceNotFound || f.Webhook != "mpod.elbv2.k8s.aws" {
		t.Errorf("report %+v", f)
	}

	// The recorder counted it again: a new resourceVersion.
	up := se.DeepCopy()
	up.ResourceVersion, up.Count = "11", 4
	s.onEvent(up)
	if got := rec.all(); len(got) != 2 || got[1].Count != 4 {
		t.Errorf("update: %+v", got)
	}

	// An events.k8s.io series, a Normal event and an unrelated Warning.
	series := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "apps", Name: "web.1", UID: "u2", ResourceVersion: "12"},
		InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Namespace: "apps", Name: "web-5d8"},
		Type:           corev1.EventTypeWarning,
		Reason:         "FailedCreate",
		Message:        sigCase(t, "unknown authority"),
		EventTime:      metav1.NewMicroTime(last.Add(-time.Minute)),
		Series:         &corev1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(last.Time)},
	}
	normal := series.DeepCopy()
	normal.UID, normal.Type = "u3", corev1.EventTypeNormal
	unrelated := series.DeepCopy()
	unrelated.UID, unrelated.Message = "u4", "Back-off restarting failed container"
	for _, e := range []*corev1.Event{series, normal, unrelated} {
		o, _ := sigSlimEvent(e)
		s.onEvent(o)
	}
	got = rec.all()
	if len(got) != 3 {
		t.Fatalf("got %d reports, want 3: %+v", len(got), got)
	}
	if f := got[2]; f.Count != 7 || !f.At.Equal(last.Time) || f.Class != UnknownAuthority || f.Object != "ReplicaSet apps/web-5d8" {
		t.Errorf("series report %+v", f)
	}

	// Deleted, then recreated with the same name: reported again.
	s.forgetEvent(se)
	s.onEvent(se)
	if n := len(rec.all()); n != 4 {
		t.Errorf("%d reports after the Event came back, want 4", n)
	}
}

// TestAPISignalsAgainstAPIServer runs the signals against a real
// kube-apiserver (chaos.Local): a validating webhook whose Service does not
// exist makes a ConfigMap write fail (seen on /metrics) and the DaemonSet
// controller's pod creates fail (seen as FailedCreate Events). The API server
// dials nothing: the Service is missing.
func TestAPISignalsAgainstAPIServer(t *testing.T) {
	start := time.Now()
	ctx, cluster, client := chaos.LocalForTest(t, "sigs", 3*time.Minute)
	if err := cluster.AddNode(ctx, "sig-node-0"); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster and node ready in %s", time.Since(start).Round(time.Millisecond))

	const (
		ns      = "sig-apps"
		hook    = "vsig.apisignals.hookscope.dev"
		svc     = "sig-missing"
		dsName  = "sig-agent"
		matchL  = "hookscope.dev/apisignals"
		matchV  = "match"
		nsLabel = "hookscope.dev/apisignals-ns"
	)
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{nsLabel: "on"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "sig-apisignals"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    hook,
			FailurePolicy:           ptr.To(admissionv1.Fail),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig: admissionv1.WebhookClientConfig{
				Service: &admissionv1.ServiceReference{Namespace: ns, Name: svc, Path: ptr.To("/validate"), Port: ptr.To[int32](443)},
			},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"},
					Resources: []string{"configmaps", "pods"},
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{nsLabel: "on"}},
			ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{matchL: matchV}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	rec := newSigRecorder()
	signals := NewAPISignals(client, 500*time.Millisecond, rec.report, slog.New(slog.NewTextHandler(sigTestWriter{t}, nil)))
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- signals.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for !signals.sigBaselined() || !signals.synced.Load() {
		if ctx.Err() != nil {
			t.Fatal("no metrics baseline or Event sync")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The API server loads webhook configurations from an informer: write
	// until the webhook is called.
	var writeFailed time.Time
	for i := 0; ; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sig-cm-%d", i), Labels: map[string]string{matchL: matchV}}}
		_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			writeFailed = time.Now()
			wf, ok := ParseWebhookFailure(err.Error())
			if !ok || wf.Webhook != hook || wf.Class != ServiceNotFound || wf.URL != "https://"+svc+"."+ns+".svc:443/validate?timeout=5s" {
				t.Fatalf("write failed with %q, parsed as %+v, %v", err, wf, ok)
			}
			t.Logf("ConfigMap write %d failed: %v", i, err)
			break
		}
		if ctx.Err() != nil || i > 200 {
			t.Fatal("the webhook was never called")
		}
		time.Sleep(50 * time.Millisecond)
	}

	dsCreated := time.Now()
	labels := map[string]string{"app": dsName, matchL: matchV}
	_, err = client.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: dsName},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": dsName}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"type": "kwok"},
					Tolerations:  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.invalid/agent:0"}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var metricsAt, eventAt time.Time
	var metricsF, eventF SignalFailure
	deadline := time.After(90 * time.Second)
	for metricsAt.IsZero() || eventAt.IsZero() {
		select {
		case f := <-rec.ch:
			t.Logf("+%s after the failed write: %s %s %q class=%q count=%d failOpen=%v at=%s detail=%q",
				time.Since(writeFailed).Round(time.Millisecond), f.Source, f.Webhook, f.Object, f.Class, f.Count, f.FailOpen, f.At.Format(time.RFC3339Nano), f.Detail)
			switch {
			case f.Source == "metrics" && f.Webhook == hook && metricsAt.IsZero():
				metricsAt, metricsF = time.Now(), f
			case f.Source == "event" && f.Webhook == hook && eventAt.IsZero():
				eventAt, eventF = time.Now(), f
			}
		case <-deadline:
			t.Fatalf("signals missing after 90 s: metrics=%v event=%v; got %+v", !metricsAt.IsZero(), !eventAt.IsZero(), rec.all())
		}
	}
	if metricsF.Count < 1 || metricsF.FailOpen || metricsF.Class != "" || metricsF.Object != "" {
		t.Errorf("metrics report %+v", metricsF)
	}
	if eventF.Class != ServiceNotFound || eventF.Object != "DaemonSet "+ns+"/"+dsName || eventF.Reason != "FailedCreate" ||
		eventF.Count < 1 || eventF.FailOpen || !strings.Contains(eventF.Detail, `service "`+svc+`" not found`) {
		t.Errorf("event report %+v", eventF)
	}
	t.Logf("metrics signal %s after the failed ConfigMap write; FailedCreate event signal %s after the DaemonSet was created (event at %s, %s before it was reported)",
		metricsAt.Sub(writeFailed).Round(time.Millisecond), eventAt.Sub(dsCreated).Round(time.Millisecond),
		eventF.At.Format(time.RFC3339), eventAt.Sub(eventF.At).Round(time.Millisecond))
}

// sigTestWriter sends the signals' log to the test log.
type sigTestWriter struct{ t *testing.T }

func (w sigTestWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestAPISignalsDeletes: a rise of failed-closed DELETE calls is flagged
// (a deletion may not complete); a rise of CREATEs alone is not.
func TestAPISignalsDeletes(t *testing.T) {
	const line = `apiserver_admission_webhook_rejection_count{error_type="calling_webhook_error",name="vdel",operation="%s",rejection_code="503",type="validating"} %d` + "\n"
	bodies := []string{
		fmt.Sprintf(line, "CREATE", 1) + fmt.Sprintf(line, "DELETE", 1),
		fmt.Sprintf(line, "CREATE", 3) + fmt.Sprintf(line, "DELETE", 1),
		fmt.Sprintf(line, "CREATE", 3) + fmt.Sprintf(line, "DELETE", 4),
	}
	want := []string{"", "vdel deletes=false", "vdel deletes=true"}
	rec := newSigRecorder()
	s := NewAPISignals(nil, time.Second, rec.report, slog.New(slog.DiscardHandler))
	i := 0
	s.fetch = func(context.Context) (io.ReadCloser, error) {
		b := bodies[i]
		i++
		return io.NopCloser(strings.NewReader(b)), nil
	}
	for step := range bodies {
		before := len(rec.all())
		s.scrape(context.Background())
		var got []string
		for _, f := range rec.all()[before:] {
			got = append(got, fmt.Sprintf("%s deletes=%v", f.Webhook, f.Deletes))
		}
		if strings.Join(got, ",") != want[step] {
			t.Errorf("step %d: %v, want %q", step, got, want[step])
		}
	}
}
