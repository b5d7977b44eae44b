package probe

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/chaos/backend"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/certs"
)

// reviewServer is the game day's admission server on loopback, with the
// name and CA a probe needs.
func reviewServer(t *testing.T) (*backend.Server, netip.AddrPort, Options) {
	t.Helper()
	ca, err := certs.NewCA("review-answers-ca")
	if err != nil {
		t.Fatal(err)
	}
	const name = "hook.webhooks.svc"
	cert, err := ca.Serving([]string{name}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := backend.Serve(ln, cert)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().(*net.TCPAddr).AddrPort(), Options{ServerName: name, CABundle: ca.PEM, Timeout: 2 * time.Second}
}

// podRules is the game day's webhook's rule: pod creates.
var podRules = []admissionregistrationv1.RuleWithOperations{{
	Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
	Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
}}

// TestReviewProbeNamesWrongAnswers: for each wrong answer of the game
// day's server, the review probe names the class with the very text a
// v1.34.4 API server wrote for that answer (game days in
// scenarios/answers_test.go), before any write meets it.
func TestReviewProbeNamesWrongAnswers(t *testing.T) {
	srv, target, o := reviewServer(t)
	cases := []struct {
		answer   backend.Answer
		mutating bool
		want     findings.Class
		detail   string
	}{
		{backend.AnswerAdmit, false, findings.Healthy, "allowed"},
		{backend.AnswerAdmit, true, findings.Healthy, "allowed"},
		{backend.AnswerInvalidResponse, false, findings.InvalidResponse,
			"received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind="},
		{backend.AnswerInvalidResponse, true, findings.InvalidResponse,
			"received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind="},
		{backend.AnswerWrongUID, false, findings.InvalidResponse, `received invalid webhook response: expected response.uid="`},
		{backend.AnswerBadPatch, true, findings.PatchDoesNotApply,
			`add operation does not apply: doc is missing path: "/spec/containers/0/env/0": missing value`},
		// A validating webhook may not patch at all.
		{backend.AnswerBadPatch, false, findings.InvalidResponse, "received invalid webhook response: validating webhook may not return response.patch"},
		{backend.AnswerNotFound, false, findings.WrongPath, "the server could not find the requested resource"},
		{backend.AnswerServerError, false, findings.ServerError,
			`an error on the server ("checking the policy store: Post \"https://policy-store.webhooks.svc:8443/check\": tls: failed to verify certificate: x509: certificate signed by unknown authority") has prevented the request from succeeding`},
	}
	for _, c := range cases {
		t.Run(string(c.answer), func(t *testing.T) {
			srv.SetAnswer(c.answer, true)
			defer srv.SetAnswer(c.answer, false)
			before := srv.Requests()
			o.Review = &Review{Path: "/mutate", SideEffects: "None", Mutating: c.mutating, Rules: podRules, Timeout: 5 * time.Second}
			r := Run(context.Background(), target, o)
			if r.Class != c.want || !strings.Contains(r.Detail, c.detail) {
				t.Fatalf("class %s, detail %q; want %s with %q", r.Class, r.Detail, c.want, c.detail)
			}
			if srv.Requests() != before+1 {
				t.Errorf("the server saw %d reviews, want 1", srv.Requests()-before)
			}
			if !strings.Contains(r.Detail, "CREATE pods default/hookscope-review-probe /mutate?timeout=5s, dryRun") {
				t.Errorf("detail %q does not say what was sent", r.Detail)
			}
		})
	}
	t.Run("wrong uid names both", func(t *testing.T) {
		srv.SetAnswer(backend.AnswerWrongUID, true)
		defer srv.SetAnswer(backend.AnswerWrongUID, false)
		o.Review = &Review{SideEffects: "None", Rules: podRules}
		r := Run(context.Background(), target, o)
		if !strings.HasSuffix(r.Detail, `", got ""`) || r.ReviewAnswered {
			t.Errorf("detail %q (answered %v), want the API server's `expected response.uid=\"UID\", got \"\"`", r.Detail, r.ReviewAnswered)
		}
	})
}

// TestReviewProbeRefusesSideEffects: a webhook that does not declare
// sideEffects None or NoneOnDryRun is sent nothing: the server sees no
// request, and the probe says why.
func TestReviewProbeRefusesSideEffects(t *testing.T) {
	srv, target, o := reviewServer(t)
	for _, c := range []struct {
		sideEffects string
		sent        bool
	}{
		{"None", true},
		{"NoneOnDryRun", true},
		{"Some", false},
		{"Unknown", false},
		{"", false},
	} {
		before := srv.Requests()
		o.Review = &Review{Path: "/validate", SideEffects: c.sideEffects, Rules: podRules}
		r := Run(context.Background(), target, o)
		if sent := srv.Requests() > before; sent != c.sent {
			t.Errorf("sideEffects %q: sent %v, want %v (%s)", c.sideEffects, sent, c.sent, r)
		}
		if r.Class != findings.Healthy {
			t.Errorf("sideEffects %q: class %s, want the handshake's Healthy", c.sideEffects, r.Class)
		}
		if !c.sent && (!strings.Contains(r.Detail, "review probe not sent") || r.Response != 0) {
			t.Errorf("sideEffects %q: detail %q, response %s; want it to say it sent nothing", c.sideEffects, r.Detail, r.Response)
		}
	}
}

// TestReviewProbeJudgesTimeoutSeconds: an answer that comes after the
// webhook's timeoutSeconds is WebhookTimeout (the API server gave up
// first); one under it but over the threshold is SlowResponse.
func TestReviewProbeJudgesTimeoutSeconds(t *testing.T) {
	srv, target, o := reviewServer(t)
	srv.SetDelay(1200 * time.Millisecond)
	o.Review = &Review{SideEffects: "None", Rules: podRules, Timeout: time.Second, SlowAfter: 100 * time.Millisecond}
	if r := Run(context.Background(), target, o); r.Class != findings.WebhookTimeout || !strings.Contains(r.Detail, "timeoutSeconds (1s)") {
		t.Errorf("an answer after timeoutSeconds: %s", r)
	}
	o.Review.Timeout = 2 * time.Second
	o.Timeout = 3 * time.Second
	if r := Run(context.Background(), target, o); r.Class != findings.SlowResponse {
		t.Errorf("an answer under timeoutSeconds, over the threshold: %s", r)
	}
}

// TestReviewOf: only admission webhooks get a review, with their rules,
// side effects and timeoutSeconds.
func TestReviewOf(t *testing.T) {
	w := callout.Webhook{TimeoutSeconds: 7, Admission: &callout.Admission{Mutating: true, SideEffects: "NoneOnDryRun", Rules: podRules}}
	rv := ReviewOf(w, "/mutate", time.Second)
	if rv == nil || rv.Timeout != 7*time.Second || !rv.Mutating || rv.SideEffects != "NoneOnDryRun" || len(rv.Rules) != 1 || rv.Path != "/mutate" {
		t.Errorf("ReviewOf = %+v", rv)
	}
	w.URL = "https://10.0.75.4:9443/mutate-v1-pod"
	if rv := ReviewOf(w, "", 0); rv == nil || rv.Path != "/mutate-v1-pod" {
		t.Errorf("a URL webhook's review posts to %+v, want its URL's path", rv)
	}
	if rv := ReviewOf(callout.Webhook{Ref: callout.Ref{Kind: callout.KindAPIService}}, "", 0); rv != nil {
		t.Errorf("an aggregated API got a review: %+v", rv)
	}
}

// TestReviewRequest: the review is a typed admission.k8s.io/v1
// AdmissionReview, dryRun, with the uid, for an object of the first
// resource the rules match, defaulted as the API server sends it.
func TestReviewRequest(t *testing.T) {
	body, object, err := subjectOf(podRules).review("4b4c8d3e-0000-4000-8000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		t.Fatal(err)
	}
	req := review.Request
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" || req == nil || req.UID != "4b4c8d3e-0000-4000-8000-000000000001" ||
		req.DryRun == nil || !*req.DryRun || req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.Namespace != "default" {
		t.Fatalf("review %s", body)
	}
	if !strings.Contains(string(req.Options.Raw), `"dryRun":["All"]`) || !strings.Contains(string(req.Options.Raw), `"CreateOptions"`) {
		t.Errorf("options %s", req.Options.Raw)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(object, &pod); err != nil || string(object) != string(req.Object.Raw) {
		t.Fatalf("object %s: %v", object, err)
	}
	if len(pod.Spec.Containers) != 1 || len(pod.Spec.Volumes) != 1 || pod.Spec.ServiceAccountName != "default" || pod.Labels["hookscope.dev/review-probe"] != "true" {
		t.Errorf("pod %+v", pod)
	}
}

// TestSubjectOf: the review asks about the first resource the rules
// match that it can send, CREATE when a rule allows it.
func TestSubjectOf(t *testing.T) {
	rule := func(ops []admissionregistrationv1.OperationType, groups, versions, resources []string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops,
			Rule: admissionregistrationv1.Rule{APIGroups: groups, APIVersions: versions, Resources: resources}}
	}
	all := []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll}
	create := []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	update := []admissionregistrationv1.OperationType{admissionregistrationv1.Update}
	connect := []admissionregistrationv1.OperationType{admissionregistrationv1.Connect}
	for _, c := range []struct {
		name  string
		rules []admissionregistrationv1.RuleWithOperations
		want  string
		kind  string
	}{
		{"pods", podRules, "CREATE pods default/hookscope-review-probe", "Pod"},
		{"no rules", nil, "CREATE pods default/hookscope-review-probe", "Pod"},
		{"everything", []admissionregistrationv1.RuleWithOperations{rule(all, []string{"*"}, []string{"*"}, []string{"*"})}, "CREATE pods default/hookscope-review-probe", "Pod"},
		{"any operation on deployments", []admissionregistrationv1.RuleWithOperations{rule(all, []string{"apps"}, []string{"v1"}, []string{"deployments"})}, "CREATE deployments.apps default/hookscope-review-probe", "Deployment"},
		{"deployments", []admissionregistrationv1.RuleWithOperations{rule(update, []string{"apps"}, []string{"v1"}, []string{"deployments"})}, "UPDATE deployments.apps default/hookscope-review-probe", "Deployment"},
		{"subresource skipped", []admissionregistrationv1.RuleWithOperations{rule(create, []string{""}, []string{"v1"}, []string{"pods/eviction", "configmaps"})}, "CREATE configmaps default/hookscope-review-probe", "ConfigMap"},
		{"connect only skipped", []admissionregistrationv1.RuleWithOperations{rule(connect, []string{""}, []string{"v1"}, []string{"pods/exec"}),
			rule(create, []string{""}, []string{"v1"}, []string{"namespaces"})}, "CREATE namespaces hookscope-review-probe", "Namespace"},
		{"custom resource", []admissionregistrationv1.RuleWithOperations{rule(create, []string{"elbv2.k8s.aws"}, []string{"v1beta1"}, []string{"targetgroupbindings"})},
			"CREATE targetgroupbindings.elbv2.k8s.aws default/hookscope-review-probe", "Targetgroupbinding"},
		{"custom policies", []admissionregistrationv1.RuleWithOperations{rule(create, []string{"kyverno.io"}, []string{"*"}, []string{"policies"})},
			"CREATE policies.kyverno.io default/hookscope-review-probe", "Policy"},
	} {
		s := subjectOf(c.rules)
		if s.String() != c.want || s.kind.Kind != c.kind {
			t.Errorf("%s: %s (%s), want %s (%s)", c.name, s, s.kind.Kind, c.want, c.kind)
		}
	}
}

// TestVerifyResponse: the API server's checks of an answer, for the
// answers the game day's server cannot give.
func TestVerifyResponse(t *testing.T) {
	jp := admissionv1.PatchTypeJSONPatch
	empty := admissionv1.PatchType("")
	review := func(resp *admissionv1.AdmissionResponse) *admissionv1.AdmissionReview {
		r := &admissionv1.AdmissionReview{Response: resp}
		r.APIVersion, r.Kind = "admission.k8s.io/v1", "AdmissionReview"
		return r
	}
	for _, c := range []struct {
		name     string
		mutating bool
		review   *admissionv1.AdmissionReview
		ok       bool
	}{
		{"valid", false, review(&admissionv1.AdmissionResponse{UID: "u", Allowed: true}), true},
		{"absent", false, review(nil), false},
		{"v1beta1", false, func() *admissionv1.AdmissionReview {
			r := review(&admissionv1.AdmissionResponse{UID: "u"})
			r.APIVersion = "admission.k8s.io/v1beta1"
			return r
		}(), false},
		{"patch with its type", true, review(&admissionv1.AdmissionResponse{UID: "u", Patch: []byte("[]"), PatchType: &jp}), true},
		{"patch without its type", true, review(&admissionv1.AdmissionResponse{UID: "u", Patch: []byte("[]")}), false},
		{"type without a patch", true, review(&admissionv1.AdmissionResponse{UID: "u", PatchType: &jp}), false},
		{"empty type", true, review(&admissionv1.AdmissionResponse{UID: "u", Patch: []byte("[]"), PatchType: &empty}), false},
		{"validating patch type", false, review(&admissionv1.AdmissionResponse{UID: "u", PatchType: &jp}), false},
	} {
		if err := verifyResponse("u", c.mutating, c.review); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestJudgeAnswers: answers that are not reviews, denials, and patches
// that apply or do not, for the object sent.
func TestJudgeAnswers(t *testing.T) {
	rv := &Review{Mutating: true}
	subject := subjectOf(podRules)
	_, object, err := subject.review("u")
	if err != nil {
		t.Fatal(err)
	}
	answer := func(patch string, allowed bool) []byte {
		resp := &admissionv1.AdmissionResponse{UID: "u", Allowed: allowed}
		if patch != "" {
			jp := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = []byte(patch), &jp
		}
		b, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: reviewTypeMeta(), Response: resp})
		return b
	}
	for _, c := range []struct {
		name   string
		status int
		body   []byte
		object []byte
		want   findings.Class
	}{
		{"not json", 200, []byte("<html>ok</html>"), object, findings.InvalidResponse},
		{"401", 401, []byte("Unauthorized"), object, findings.InvalidResponse},
		{"503", 503, []byte("overloaded"), object, findings.ServerError},
		{"denied", 200, answer("", false), object, findings.Healthy},
		{"a label that applies", 200, answer(`[{"op":"add","path":"/metadata/labels/a","value":"b"}]`, true), object, findings.Healthy},
		{"an env list added whole", 200, answer(`[{"op":"add","path":"/spec/containers/0/env","value":[{"name":"A","value":"b"}]}]`, true), object, findings.Healthy},
		{"a volume at the list's head", 200, answer(`[{"op":"add","path":"/spec/volumes/0","value":{"name":"v","emptyDir":{}}}]`, true), object, findings.Healthy},
		{"no annotations to add to", 200, answer(`[{"op":"add","path":"/metadata/annotations/a","value":"b"}]`, true), object, findings.PatchDoesNotApply},
		{"not JSONPatch", 200, answer(`{"op":"add"}`, true), object, findings.InvalidResponse},
		{"a patch on a delete", 200, answer(`[{"op":"add","path":"/metadata/labels/a","value":"b"}]`, true), nil, findings.PatchDoesNotApply},
	} {
		if got, detail := rv.judge("u", subject, c.object, c.status, c.body); got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, detail, c.want)
		}
	}
}

func reviewTypeMeta() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}
}
