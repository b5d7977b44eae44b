package probe

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// Review makes a probe also send one AdmissionReview, as the API server
// does, and judge the answer as the API server would: an answer the API
// server would refuse (InvalidResponse), a patch that does not apply to
// the object sent (PatchDoesNotApply), HTTP 404 (WrongPath) or 5xx
// (ServerError), no answer within timeoutSeconds (WebhookTimeout), a slow
// one (SlowResponse). It is opt-in, and sent only to a webhook that
// declares no side effects (sideEffects None or NoneOnDryRun): the review
// is dryRun, for an object of the first resource its rules match
// (reviewObject), so the webhook must not change anything for it. A
// denial is the webhook working.
type Review struct {
	// Path is the webhook's path on its Service ("/" if empty).
	Path string
	// SlowAfter: an answer that takes longer is SlowResponse.
	SlowAfter time.Duration
	// Timeout is the webhook's timeoutSeconds: the API server gives up on
	// a call then (0: not judged).
	Timeout time.Duration
	// SideEffects is the webhook's sideEffects: nothing is sent unless it
	// is None or NoneOnDryRun.
	SideEffects string
	// Mutating: the answer may carry a patch, which must apply.
	Mutating bool
	// Rules are the webhook's rules: the review asks about an object of
	// the first resource they match.
	Rules []admissionregistrationv1.RuleWithOperations
}

// ReviewOf is the review probe of webhook w at path (its Service's; for a
// webhook that calls a URL, the URL's), slow after slowAfter; nil when w
// is not an admission webhook.
func ReviewOf(w callout.Webhook, path string, slowAfter time.Duration) *Review {
	if w.Admission == nil {
		return nil
	}
	if w.Service == nil && w.URL != "" {
		if u, err := url.Parse(w.URL); err == nil {
			path = u.Path
		}
	}
	return &Review{Path: path, SlowAfter: slowAfter, Timeout: time.Duration(w.TimeoutSeconds) * time.Second,
		SideEffects: w.Admission.SideEffects, Mutating: w.Admission.Mutating, Rules: w.Admission.Rules}
}

// maxReviewAnswer caps the answer a review probe reads.
const maxReviewAnswer = 1 << 20

// maxQuotedBody caps the body of an HTTP error quoted in a detail, as the
// API server's client does.
const maxQuotedBody = 2048

// refusal says why rv must not be sent; empty when it may.
func (rv *Review) refusal() string {
	switch rv.SideEffects {
	case "None", "NoneOnDryRun":
		return ""
	case "":
		return "the webhook declares no sideEffects"
	}
	return "the webhook declares sideEffects " + rv.SideEffects + " (only None and NoneOnDryRun are sent a dryRun review)"
}

// send posts one AdmissionReview on conn and judges the answer (see
// Review). A webhook with side effects is sent nothing.
func (rv *Review) send(conn net.Conn, serverName string, r *Result) {
	if why := rv.refusal(); why != "" {
		r.Detail = joinDetail(r.Detail, "review probe not sent: "+why)
		return
	}
	uid := newUID()
	subject := subjectOf(rv.Rules)
	body, object, err := subject.review(uid)
	if err != nil {
		r.Detail = joinDetail(r.Detail, "review probe: "+err.Error())
		return
	}
	req, err := http.NewRequest(http.MethodPost, "https://"+serverName+rv.path(), bytes.NewReader(body))
	if err != nil {
		r.Detail = joinDetail(r.Detail, "review probe: "+err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	start := time.Now()
	err = req.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(conn), req)
	}
	var answer []byte
	if err == nil {
		answer, err = io.ReadAll(io.LimitReader(resp.Body, maxReviewAnswer))
		resp.Body.Close()
	}
	r.Response = time.Since(start)
	if err != nil {
		rv.noAnswer(err, r)
		return
	}
	r.ResponseStatus = resp.StatusCode
	class, detail := rv.judge(uid, subject, object, resp.StatusCode, answer)
	r.ReviewAnswered = class != findings.InvalidResponse && resp.StatusCode/100 == 2
	what := fmt.Sprintf("review probe (%s %s, dryRun): ", subject, rv.path())
	switch {
	case rv.Timeout > 0 && r.Response >= rv.Timeout:
		r.Class = findings.WebhookTimeout
		r.Detail = fmt.Sprintf("%sanswered in %s, at or over timeoutSeconds (%s): the API server gives up first", what, r.Response.Round(time.Millisecond), rv.Timeout)
	case class != findings.Healthy:
		r.Class, r.Detail = class, what+detail
	case rv.SlowAfter > 0 && r.Response >= rv.SlowAfter:
		r.Class = findings.SlowResponse
		r.Detail = fmt.Sprintf("%sanswered HTTP %d in %s, above the %s threshold", what, resp.StatusCode, r.Response.Round(time.Millisecond), rv.SlowAfter)
	default:
		r.Detail = joinDetail(r.Detail, what+detail)
	}
}

// noAnswer judges a review that got no answer: none in time is
// WebhookTimeout once the webhook's timeoutSeconds passed, SlowResponse
// before (the probe's own timeout is shorter).
func (rv *Review) noAnswer(err error, r *Result) {
	if !dialTimeout(err) {
		r.Detail = joinDetail(r.Detail, "review probe: "+err.Error())
		return
	}
	r.Class = findings.SlowResponse
	if rv.Timeout > 0 && r.Response >= rv.Timeout {
		r.Class = findings.WebhookTimeout
	}
	r.Detail = fmt.Sprintf("review probe: no answer in %s (timeoutSeconds %s)", r.Response.Round(time.Millisecond), rv.Timeout)
}

// path is the path the review is posted to, with the timeout the API
// server adds.
func (rv *Review) path() string {
	p := rv.Path
	if p == "" {
		p = "/"
	}
	if rv.Timeout > 0 {
		p += fmt.Sprintf("?timeout=%ds", int(rv.Timeout/time.Second))
	}
	return p
}

// judge is what the API server makes of an answer (status and body) to
// the review of object with uid: Healthy when it takes it, with what the
// webhook said; else the class and, in the API server's words, why.
func (rv *Review) judge(uid string, subject reviewSubject, object []byte, status int, body []byte) (findings.Class, string) {
	switch {
	case status == http.StatusNotFound:
		return findings.WrongPath, "answered HTTP 404: the server could not find the requested resource (the path is not one the webhook's server serves)"
	case status >= 500:
		return findings.ServerError, fmt.Sprintf("answered HTTP %d: an error on the server (%q) has prevented the request from succeeding", status, quotedBody(body))
	case status < 200 || status > 206:
		return findings.InvalidResponse, fmt.Sprintf("answered HTTP %d (%q), not an AdmissionReview", status, quotedBody(body))
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return findings.InvalidResponse, "the answer does not decode as an AdmissionReview: " + err.Error()
	}
	if err := verifyResponse(types.UID(uid), rv.Mutating, &review); err != nil {
		return findings.InvalidResponse, "received invalid webhook response: " + err.Error()
	}
	resp := review.Response
	if !resp.Allowed {
		msg := "(no message)"
		if resp.Result != nil && resp.Result.Message != "" {
			msg = resp.Result.Message
		}
		return findings.Healthy, "denied: " + msg
	}
	if len(resp.Patch) == 0 {
		return findings.Healthy, "allowed"
	}
	if *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		return findings.InvalidResponse, fmt.Sprintf("unsupported patch type %q", *resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return findings.InvalidResponse, "received undecodable patch in webhook response: " + err.Error()
	}
	if len(patch) == 0 {
		return findings.Healthy, "allowed"
	}
	if object == nil {
		return findings.PatchDoesNotApply, "the webhook attempted to modify the object, which is not supported for this operation"
	}
	if _, err := patch.Apply(object); err != nil {
		return findings.PatchDoesNotApply, fmt.Sprintf("its patch %s does not apply to the object sent: %v", cut(string(resp.Patch), maxQuotedBody), err)
	}
	return findings.Healthy, fmt.Sprintf("allowed, with a patch of %d operations that applies", len(patch))
}

// verifyResponse checks an answer as the API server does
// (k8s.io/apiserver's VerifyAdmissionResponse for admission.k8s.io/v1),
// with its texts.
func verifyResponse(uid types.UID, mutating bool, review *admissionv1.AdmissionReview) error {
	r := review.Response
	if r == nil {
		return fmt.Errorf("webhook response was absent")
	}
	if r.UID != uid {
		return fmt.Errorf("expected response.uid=%q, got %q", uid, r.UID)
	}
	want := admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")
	if got := schema.FromAPIVersionAndKind(review.APIVersion, review.Kind); got != want {
		return fmt.Errorf("expected webhook response of %v, got %v", want.String(), got.String())
	}
	if !mutating {
		if len(r.Patch) > 0 {
			return fmt.Errorf("validating webhook may not return response.patch")
		}
		if r.PatchType != nil {
			return fmt.Errorf("validating webhook may not return response.patchType")
		}
		return nil
	}
	switch {
	case len(r.Patch) > 0 && r.PatchType == nil:
		return fmt.Errorf("webhook returned response.patch but not response.patchType")
	case len(r.Patch) == 0 && r.PatchType != nil:
		return fmt.Errorf("webhook returned response.patchType but not response.patch")
	case r.PatchType != nil && *r.PatchType == "":
		return fmt.Errorf("webhook returned invalid response.patchType of %q", *r.PatchType)
	}
	return nil
}

// newUID is a random UID in the API server's form (a version 4 UUID).
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// quotedBody is an error answer's body as the API server's client quotes
// it: trimmed, cut.
func quotedBody(body []byte) string { return cut(strings.TrimSpace(string(body)), maxQuotedBody) }

// cut cuts s to n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// joinDetail appends more to detail.
func joinDetail(detail, more string) string {
	if detail == "" {
		return more
	}
	return detail + "; " + more
}
