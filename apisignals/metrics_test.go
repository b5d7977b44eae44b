package apisignals

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

// metricsSample is what a v1.34 API server serves after failed calls of
// a fail-closed validating webhook (vpod), a fail-open mutating one (mpod),
// a healthy one (ok) and a denial, among families ParseWebhookMetrics skips.
const metricsSample = `# HELP apiserver_admission_controller_admission_duration_seconds [STABLE] Admission controller latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).
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
	got, err := ParseWebhookMetrics(strings.NewReader(metricsSample))
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

// callOutSample is what a v1.34 API server served (buckets trimmed) with
// a CRD whose conversion webhook's Service was gone (reads at v2 by a
// client and by the garbage collector), a CRD whose conversions pass, and
// an APIService whose Service was gone.
const callOutSample = `# TYPE aggregator_unavailable_apiservice gauge
aggregator_unavailable_apiservice{name="v1.apps"} 0
aggregator_unavailable_apiservice{name="v1.p.hookscope.dev"} 0
aggregator_unavailable_apiservice{name="v1alpha1.q.hookscope.dev"} 1
# TYPE apiserver_conversion_webhook_request_total counter
apiserver_conversion_webhook_request_total{failure_type="",result="success"} 4
apiserver_conversion_webhook_request_total{failure_type="conversion_webhook_call_failure",result="failure"} 63
# TYPE apiserver_crd_conversion_webhook_duration_seconds histogram
apiserver_crd_conversion_webhook_duration_seconds_bucket{crd_name="widgets.p.hookscope.dev",from_version="v1",succeeded="false",to_version="v2",le="0.001"} 60
apiserver_crd_conversion_webhook_duration_seconds_bucket{crd_name="widgets.p.hookscope.dev",from_version="v1",succeeded="false",to_version="v2",le="+Inf"} 61
apiserver_crd_conversion_webhook_duration_seconds_sum{crd_name="widgets.p.hookscope.dev",from_version="v1",succeeded="false",to_version="v2"} 0.044490061000000004
apiserver_crd_conversion_webhook_duration_seconds_count{crd_name="widgets.p.hookscope.dev",from_version="v1",succeeded="false",to_version="v2"} 61
apiserver_crd_conversion_webhook_duration_seconds_sum{crd_name="widgets.p.hookscope.dev",from_version="v2",succeeded="false",to_version="v1"} 0.00069919
apiserver_crd_conversion_webhook_duration_seconds_count{crd_name="widgets.p.hookscope.dev",from_version="v2",succeeded="false",to_version="v1"} 1
apiserver_crd_conversion_webhook_duration_seconds_count{crd_name="gadgets.p.hookscope.dev",from_version="v1",succeeded="true",to_version="v2"} 7
`

// TestParseCallOutMetrics: a CRD's failed conversions (over every pair of
// versions, passed ones not counted) and an APIService the API server
// marks unavailable are read per name; the others stay out.
func TestParseCallOutMetrics(t *testing.T) {
	got, err := ParseWebhookMetrics(strings.NewReader(callOutSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]WebhookCallCounts{
		"widgets.p.hookscope.dev":  {ConversionFailures: 62},
		"gadgets.p.hookscope.dev":  {},
		"v1alpha1.q.hookscope.dev": {Unavailable: true},
		"v1.apps":                  {},
		"v1.p.hookscope.dev":       {},
	}
	for name, w := range want {
		if g := got[name]; g != w {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	// The same without TYPE lines: untyped families.
	var untyped []string
	for _, l := range strings.Split(callOutSample, "\n") {
		if !strings.HasPrefix(l, "# TYPE") {
			untyped = append(untyped, l)
		}
	}
	got, err = ParseWebhookMetrics(strings.NewReader(strings.Join(untyped, "\n")))
	if err != nil || got["widgets.p.hookscope.dev"].ConversionFailures != 62 || !got["v1alpha1.q.hookscope.dev"].Unavailable {
		t.Errorf("untyped: %+v, %v", got, err)
	}
}

func TestParseWebhookMetricsErrors(t *testing.T) {
	cases := []struct{ name, body, errHas string }{
		{"html", "<html><body>Forbidden</body></html>\n", "line 1: not a comment or a metric sample"},
		{"bare word", "# HELP x y\ngarbage\n", "line 2: not a comment or a metric sample"},
		{"bad value", "apiserver_admission_webhook_fail_open_count{name=\"a\",type=\"admit\"} twelve\n", "line 1"},
		{"unterminated labels", "# TYPE apiserver_admission_webhook_rejection_count counter\napiserver_admission_webhook_rejection_count{name=\"a 1\n", "line 2"},
		{"bad value after skipped lines", "apiserver_request_total{code=\"200\"} 1\n# HELP x y\n\napiserver_admission_webhook_fail_open_count{name=\"a\"} x\n", "line 4: "},
		{"line too long", "apiserver_request_total " + strings.Repeat("1", maxMetricLine+1) + "\n", "token too long"},
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
	body.WriteString(metricsSample)
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseWebhookMetrics(strings.NewReader(body.String())); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseWebhookMetrics(f *testing.F) {
	f.Add([]byte(metricsSample))
	f.Add([]byte(callOutSample))
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
