package apisignals

import (
	"strings"
	"testing"
	"time"

	"github.com/hookscope/hookscope/findings"
)

const testURL = "https://svc.ns.svc:443/validate?timeout=5s"

// callFailed is the client error of a fail-closed call whose cause is cause.
func callFailed(cause string) string {
	return `Internal error occurred: failed calling webhook "vpod.x.hookscope.dev": failed to call webhook: Post "` + testURL + `": ` + cause
}

// failureCases are the texts the API server writes (from the
// article and a v1.34.4 kube-apiserver) and what they mean. Each input is
// also a seed of FuzzParseWebhookFailure (testdata/fuzz).
var failureCases = []struct {
	name      string
	msg       string
	ok        bool
	want      WebhookFailure // Detail is checked with detailHas
	detailHas string
}{
	{
		name: "the article's expired certificate",
		msg:  `failed calling webhook "mtargetgroupbinding.elbv2.k8s.aws": Post "https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-elbv2-k8s-aws-v1beta1-targetgroupbinding?timeout=30s": x509: certificate has expired or is not yet valid: current time 2022-03-03T07:37:16Z is after 2022-02-26T11:24:26Z`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mtargetgroupbinding.elbv2.k8s.aws",
			URL:     "https://aws-load-balancer-webhook-service.kube-system.svc:443/mutate-elbv2-k8s-aws-v1beta1-targetgroupbinding?timeout=30s",
			Class:   findings.CertExpired,
		},
		detailHas: "current time 2022-03-03T07:37:16Z is after 2022-02-26T11:24:26Z",
	},
	{
		name:      "certificate not yet valid",
		msg:       callFailed(`tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2022-02-20T07:37:16Z is before 2022-02-26T11:24:26Z`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.CertNotYetValid},
		detailHas: "is before",
	},
	{
		name: "the article's DaemonSet FailedCreate, service not found",
		msg:  `Error creating: Internal error occurred: failed calling webhook "mpod.elbv2.k8s.aws": failed to call webhook: Post "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s": service "webhook-service" not found`,
		ok:   true,
		want: WebhookFailure{
			Webhook: "mpod.elbv2.k8s.aws",
			URL:     "https://webhook-service.system.svc:443/mutate-v1-pod?timeout=10s",
			Class:   findings.ServiceNotFound,
		},
		detailHas: `service "webhook-service" not found`,
	},
	{
		name:      "no endpoints",
		msg:       callFailed(`no endpoints available for service "svc"`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.NoEndpoints},
		detailHas: `no endpoints available for service "svc"`,
	},
	{
		name:      "unknown authority",
		msg:       callFailed(`tls: failed to verify certificate: x509: certificate signed by unknown authority`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.UnknownAuthority},
		detailHas: "x509: certificate signed by unknown authority",
	},
	// Certificates rejected for their quality (v1.34.4, Go 1.26.8, game
	// days TestSHA1ServingCertificate, TestSHA1RSAFromIntermediate,
	// TestCommonNameOnlyCertificate, TestURLWebhookCommonNameOnly).
	{
		name:      "SHA-1 serving certificate (ECDSA-SHA1)",
		msg:       `Internal error occurred: failed calling webhook "vpod.sha1-cert.hookscope.dev": failed to call webhook: Post "https://sha1-cert-webhook.chaos-sha1-cert.svc:443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm ECDSA-SHA1" while trying to verify candidate authority certificate "hookscope-chaos-sha1-cert")`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.sha1-cert.hookscope.dev", URL: "https://sha1-cert-webhook.chaos-sha1-cert.svc:443/validate?timeout=5s", Class: findings.InsecureSignature},
		detailHas: "signed with SHA-1",
	},
	{
		name:      "apiserver log, SHA1-RSA from an intermediate",
		msg:       `W1206 04:48:23.144966   22844 dispatcher.go:217] Failed calling webhook, failing closed vpod.sha1-rsa.hookscope.dev: failed calling webhook "vpod.sha1-rsa.hookscope.dev": failed to call webhook: Post "https://sha1-rsa-webhook.chaos-sha1-rsa.svc:443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of "x509: cannot verify signature: insecure algorithm SHA1-RSA" while trying to verify candidate authority certificate "hookscope-chaos-rsa-intermediate-sha1-rsa")`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.sha1-rsa.hookscope.dev", URL: "https://sha1-rsa-webhook.chaos-sha1-rsa.svc:443/validate?timeout=5s", Class: findings.InsecureSignature},
		detailHas: `insecure algorithm SHA1-RSA`,
	},
	{
		// Go's text (probe tests) for a CA reissued under its old name: a
		// hint, but no insecure algorithm: the caBundle is what is wrong.
		name:      "unknown authority with a signature hint",
		msg:       callFailed(`tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "probe-ec-ca")`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.UnknownAuthority},
		detailHas: "the caBundle does not verify",
	},
	{
		name:      "Common Name only",
		msg:       `Internal error occurred: failed calling webhook "vpod.cn-only.hookscope.dev": failed to call webhook: Post "https://cn-only-webhook.chaos-cn-only.svc:443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.cn-only.hookscope.dev", URL: "https://cn-only-webhook.chaos-cn-only.svc:443/validate?timeout=5s", Class: findings.LegacyCommonName},
		detailHas: "only in its Common Name",
	},
	{
		name:      "apiserver log, Common Name only at a URL",
		msg:       `W1206 04:48:27.543791   22844 dispatcher.go:217] Failed calling webhook, failing closed vpod.url-cn-only.hookscope.dev: failed calling webhook "vpod.url-cn-only.hookscope.dev": failed to call webhook: Post "https://10.0.0.4:8443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate relies on legacy Common Name field, use SANs instead`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.url-cn-only.hookscope.dev", URL: "https://10.0.0.4:8443/validate?timeout=5s", Class: findings.LegacyCommonName},
		detailHas: "no subjectAltName",
	},
	{
		// Go's text (probe tests): no SAN, and the Common Name is another
		// name: the name is wrong.
		name:      "no names at all",
		msg:       callFailed(`tls: failed to verify certificate: x509: certificate is not valid for any names, but wanted to match hook.webhooks.svc`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.HostnameMismatch},
		detailHas: "for another name",
	},
	{
		name:      "hostname mismatch",
		msg:       callFailed(`tls: failed to verify certificate: x509: certificate is valid for a.b.svc, not c.d.svc`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.HostnameMismatch},
		detailHas: "not c.d.svc",
	},
	{
		name:      "connection refused",
		msg:       callFailed(`dial tcp 10.0.0.7:8443: connect: connection refused`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.ConnectionRefused},
		detailHas: "connection refused",
	},
	{
		name:      "connection reset",
		msg:       callFailed(`read tcp 10.0.0.1:51234->10.0.0.7:8443: read: connection reset by peer`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.ConnectionRefused},
		detailHas: "reset the connection",
	},
	{
		name:      "no route to host",
		msg:       callFailed(`dial tcp 10.0.0.7:8443: connect: no route to host`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.Unreachable},
		detailHas: "no route to the backend",
	},
	{
		name:      "a URL webhook's host that does not resolve",
		msg:       callFailed(`dial tcp: lookup hooks.example.invalid on 10.96.0.10:53: no such host`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.Unreachable},
		detailHas: "does not resolve",
	},
	{
		name:      "context deadline exceeded",
		msg:       callFailed(`context deadline exceeded`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.WebhookTimeout},
		detailHas: "timeoutSeconds",
	},
	{
		name:      "client timeout",
		msg:       callFailed(`net/http: request canceled (Client.Timeout exceeded while awaiting headers)`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.WebhookTimeout},
		detailHas: "Client.Timeout exceeded",
	},
	{
		name:      "dial i/o timeout: the SYN was never answered",
		msg:       callFailed(`dial tcp 10.0.0.7:8443: i/o timeout`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.ConnectTimeout},
		detailHas: "never answered",
	},
	{
		name:      "connect timed out (a security group drops the SYN)",
		msg:       callFailed(`dial tcp 10.0.0.7:9443: connect: connection timed out`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.ConnectTimeout},
		detailHas: "connection timed out",
	},
	{
		name:      "waiting for a connection (a default-deny NetworkPolicy)",
		msg:       callFailed(`net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.ConnectTimeout},
		detailHas: "waiting for connection",
	},
	{
		name:      "ALB controller behind a node security group that drops 9443",
		msg:       `Internal error occurred: failed calling webhook "vingress.elbv2.k8s.aws": failed to call webhook: Post "https://aws-load-balancer-webhook-service.kube-system.svc:443/validate-networking-v1beta1-ingress?timeout=10s": context deadline exceeded`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vingress.elbv2.k8s.aws", URL: "https://aws-load-balancer-webhook-service.kube-system.svc:443/validate-networking-v1beta1-ingress?timeout=10s", Class: findings.WebhookTimeout},
		detailHas: "timeoutSeconds",
	},
	{
		name:      "overlay pod network on EKS",
		msg:       callFailed(`Address is not allowed`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.PodNetworkNotRoutable},
		detailHas: "cannot route to the pod network",
	},
	{
		name:      "a sidecar closes the connection",
		msg:       callFailed(`EOF`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.NotTheWebhook},
		detailHas: "sidecar",
	},
	{
		name:      "plain HTTP answers",
		msg:       callFailed(`http: server gave HTTP response to HTTPS client`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.NotTheWebhook},
		detailHas: "plain HTTP",
	},
	{
		name:      "TLS handshake timeout",
		msg:       callFailed(`net/http: TLS handshake timeout`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.HandshakeTimeout},
		detailHas: "TLS handshake timeout",
	},
	{
		name:      "client certificate refused",
		msg:       callFailed(`remote error: tls: bad certificate`),
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x.hookscope.dev", URL: testURL, Class: findings.TLSHandshakeFailed},
		detailHas: "bad certificate",
	},
	// A webhook that answers, but wrongly (v1.34.4; game days
	// TestInvalidResponse, TestWrongPath, TestServerError and the same
	// answers of a mutating, a fail-open and a wrong-uid webhook).
	{
		name:      "invalid response: not an AdmissionReview",
		msg:       `Internal error occurred: failed calling webhook "vpod.invalid-response.hookscope.dev": received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.invalid-response.hookscope.dev", Class: findings.InvalidResponse},
		detailHas: "not an AdmissionReview the API server accepts: received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=",
	},
	{
		name:      "invalid response: another uid",
		msg:       `Internal error occurred: failed calling webhook "vpod.x-uid.hookscope.dev": received invalid webhook response: expected response.uid="396a0939-be53-44b5-9ea4-86f8dbb1b776", got ""`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x-uid.hookscope.dev", Class: findings.InvalidResponse},
		detailHas: `another uid than the request's (response.uid must be request.uid): received invalid webhook response: expected response.uid="396a0939-be53-44b5-9ea4-86f8dbb1b776", got ""`,
	},
	{
		name:      "apiserver log: a mutating webhook's invalid response, failing closed",
		msg:       `W1206 05:07:31.388550   18490 dispatcher.go:225] Failed calling webhook, failing closed mpod.x-mut-invalid.hookscope.dev: failed calling webhook "mpod.x-mut-invalid.hookscope.dev": received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=`,
		ok:        true,
		want:      WebhookFailure{Webhook: "mpod.x-mut-invalid.hookscope.dev", Class: findings.InvalidResponse},
		detailHas: "got /, Kind=",
	},
	{
		name:      "apiserver log: an invalid response, fail open's Unhandled Error line",
		msg:       `E1206 05:07:28.982094   18490 dispatcher.go:213] "Unhandled Error" err="failed calling webhook \"vpod.x-invalid-ignore.hookscope.dev\": received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=" logger="UnhandledError"`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.x-invalid-ignore.hookscope.dev", Class: findings.InvalidResponse, FailOpen: true},
		detailHas: "got /, Kind=",
	},
	{
		name:      "wrong path: HTTP 404",
		msg:       `Internal error occurred: failed calling webhook "vpod.wrong-path.hookscope.dev": failed to call webhook: the server could not find the requested resource`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.wrong-path.hookscope.dev", Class: findings.WrongPath},
		detailHas: "HTTP 404: the configuration's path is not one it serves: the server could not find the requested resource",
	},
	{
		// The webhook's body quotes its own call's x509 error: the
		// webhook's certificate is not the cause.
		name:      "HTTP 500 quoting the webhook's own x509 error",
		msg:       `Internal error occurred: failed calling webhook "vpod.server-error.hookscope.dev": failed to call webhook: an error on the server ("checking the policy store: Post \"https://policy-store.webhooks.svc:8443/check\": tls: failed to verify certificate: x509: certificate signed by unknown authority") has prevented the request from succeeding`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.server-error.hookscope.dev", Class: findings.ServerError},
		detailHas: "HTTP 5xx: an error on the server (",
	},
	{
		name:      "apiserver log: HTTP 500, failing closed",
		msg:       `W1206 05:17:16.771779    6814 dispatcher.go:217] Failed calling webhook, failing closed vpod.server-error.hookscope.dev: failed calling webhook "vpod.server-error.hookscope.dev": failed to call webhook: an error on the server ("checking the policy store: Post \"https://policy-store.webhooks.svc:8443/check\": tls: failed to verify certificate: x509: certificate signed by unknown authority") has prevented the request from succeeding`,
		ok:        true,
		want:      WebhookFailure{Webhook: "vpod.server-error.hookscope.dev", Class: findings.ServerError},
		detailHas: "has prevented the request from succeeding",
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
			Class:   findings.ServiceNotFound,
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
			Class:    findings.NoEndpoints,
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
			Class:    findings.Unreachable,
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
			Class:   findings.WebhookTimeout,
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
			Class:   findings.ServiceNotFound,
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
	// A patch that does not apply: the API server rejects the write
	// whatever the failurePolicy, without naming the webhook and without a
	// log line (its metrics name it: RejectionClass).
	{name: "a patch that does not apply names no webhook", msg: `Internal error occurred: add operation does not apply: doc is missing path: "/spec/containers/0/env/0": missing value`},
	{name: "panic fail open has no call", msg: `W1125 02:45:05.657908 23852 dispatcher.go:150] Panic calling webhook, failing open vpod.x.hookscope.dev: runtime error`},
}

// caseMsg returns the message of the named case.
func caseMsg(t *testing.T, name string) string {
	t.Helper()
	for _, c := range failureCases {
		if c.name == name {
			return c.msg
		}
	}
	t.Fatalf("no case %q", name)
	return ""
}

func TestParseWebhookFailure(t *testing.T) {
	for _, c := range failureCases {
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

// TestRejectionClass: the rejection counter's labels, as a v1.34.4 API
// server wrote them for the game days' wrong answers.
func TestRejectionClass(t *testing.T) {
	for _, c := range []struct {
		series                 string // as /metrics showed it
		errorType, code, hType string
		want                   findings.Class
	}{
		{`{error_type="calling_webhook_error",name="vpod.x-404.hookscope.dev",operation="CREATE",rejection_code="404",type="validating"} 1`,
			"calling_webhook_error", "404", "validating", findings.WrongPath},
		{`{error_type="calling_webhook_error",name="vpod.x-500.hookscope.dev",operation="CREATE",rejection_code="500",type="validating"} 1`,
			"calling_webhook_error", "500", "validating", findings.ServerError},
		{`{error_type="apiserver_internal_error",name="mpod.x-patch.hookscope.dev",operation="CREATE",rejection_code="0",type="admit"} 1`,
			"apiserver_internal_error", "0", "admit", findings.PatchDoesNotApply},
		// An invalid response is a 503, as is every call that got no
		// usable answer.
		{`{error_type="calling_webhook_error",name="vpod.x-invalid.hookscope.dev",operation="CREATE",rejection_code="503",type="validating"} 1`,
			"calling_webhook_error", "503", "validating", ""},
		{`{error_type="calling_webhook_error",name="mpod.x-mut-invalid.hookscope.dev",operation="CREATE",rejection_code="503",type="admit"} 1`,
			"calling_webhook_error", "503", "admit", ""},
	} {
		if got := RejectionClass(c.errorType, c.code, c.hType); got != c.want {
			t.Errorf("%s: %q, want %q", c.series, got, c.want)
		}
	}
}

func TestParseWebhookFailureBoundsWork(t *testing.T) {
	// A failed call beyond the first 64 KiB is not read.
	huge := strings.Repeat("x", maxScan) + callFailed("connection refused")
	if got, ok := ParseWebhookFailure(huge); ok {
		t.Errorf("read past the cap: %+v", got)
	}
	// A cause longer than the Detail cap is cut.
	long := callFailed("connection refused " + strings.Repeat("y", 10*maxDetail))
	got, ok := ParseWebhookFailure(long)
	if !ok || got.Class != findings.ConnectionRefused || len(got.Detail) > maxDetail {
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
	for _, c := range failureCases {
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
		if got.Webhook == "" || len(got.Webhook) > maxName || strings.ContainsAny(got.Webhook, "\" \t\\\n") {
			t.Fatalf("bad webhook name %q", got.Webhook)
		}
		if len(got.Detail) > maxDetail {
			t.Fatalf("Detail is %d bytes", len(got.Detail))
		}
		if again, _ := ParseWebhookFailure(msg); again != got {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
		// Whatever follows the first line does not change the answer.
		if !strings.Contains(msg, "\n") && len(msg) < maxScan {
			if more, _ := ParseWebhookFailure(msg + "\nfailed calling webhook \"other\": connection refused"); more != got {
				t.Fatalf("a second line changed the answer: %+v then %+v", got, more)
			}
		}
	})
}
