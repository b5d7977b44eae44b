//go:build linux

package scenarios

import (
	"context"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"

	"github.com/hookscope/hookscope/chaos"
	"github.com/hookscope/hookscope/chaos/backend"
)

// Webhooks that answer, but wrongly: the handshake and the HTTP exchange
// work, what comes back fails the write. The texts are a v1.34.4 API
// server's. Each webhook's configuration opts in to the review probe (the
// lab's agent runs without --review-probe), which sends it a dryRun
// AdmissionReview every probe interval and judges the answer as the API
// server would.

// quotedServerError is the game day's server's HTTP 500 body as the API
// server quotes it.
const quotedServerError = `"checking the policy store: Post \"https://policy-store.webhooks.svc:8443/check\": tls: failed to verify certificate: x509: certificate signed by unknown authority"`

// answer makes the webhook's server answer every review with a.
func answer(a backend.Answer) func(context.Context, *chaos.Webhook) (any, error) {
	return func(_ context.Context, wh *chaos.Webhook) (any, error) { return nil, wh.Server.SetAnswer(a, true) }
}

// answerRight makes the server admit again, as the fixed (or rolled back)
// webhook does.
func answerRight(a backend.Answer) func(context.Context, *chaos.Webhook, any) error {
	return func(_ context.Context, wh *chaos.Webhook, _ any) error { return wh.Server.SetAnswer(a, false) }
}

// reviewProbeLead is how long after the injection the first write comes
// in the game days where the review probe must name the failure first:
// more than one probe interval (2 s in the lab, +-10%).
const reviewProbeLead = 4 * time.Second

// TestInvalidResponse: the webhook answers with its response, but not as
// an AdmissionReview (no apiVersion, no kind). The review probe names it
// before the first write fails.
func TestInvalidResponse(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "invalid response (not an AdmissionReview)",
		expectedClass:   "InvalidResponse",
		spec:            chaos.WebhookSpec{Name: "invalid-response", FailurePolicy: admissionv1.Fail, ReviewProbe: true},
		inject:          answer(backend.AnswerInvalidResponse),
		firstWriteDelay: reviewProbeLead,
		beforeFailure:   true,
		wantError:       "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=",
		effect:          "writes rejected",
		evidence:        "received invalid webhook response: expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=",
		fix:             "answer a valid AdmissionReview",
		remediation:     "answer valid AdmissionReviews again (roll the webhook back)",
		remediate:       answerRight(backend.AnswerInvalidResponse),
	}.feature())
}

// TestPatchDoesNotApply: a mutating webhook's JSONPatch adds to a list the
// pods do not have. The API server rejects the write whatever the
// failurePolicy (this webhook's is Ignore), and its answer names no
// webhook; the review probe names the webhook before the first write.
func TestPatchDoesNotApply(t *testing.T) {
	testenv.Test(t, gameDay{
		name:            "mutating patch that does not apply (failurePolicy Ignore)",
		expectedClass:   "PatchDoesNotApply",
		spec:            chaos.WebhookSpec{Name: "bad-patch", FailurePolicy: admissionv1.Ignore, Mutating: true, ReviewProbe: true},
		inject:          answer(backend.AnswerBadPatch),
		firstWriteDelay: reviewProbeLead,
		beforeFailure:   true,
		wantError:       `Internal error occurred: add operation does not apply: doc is missing path: "/spec/containers/0/env/0": missing value`,
		unnamed:         true,
		effect:          "writes rejected",
		evidence:        `add operation does not apply: doc is missing path: "/spec/containers/0/env/0": missing value`,
		fix:             "Ignore does not help",
		remediation:     "answer a patch that applies (roll the webhook back)",
		remediate:       answerRight(backend.AnswerBadPatch),
	}.feature())
}

// TestWrongPath: the webhook's server answers HTTP 404 for the path its
// configuration names (aws-load-balancer-controller #2039).
func TestWrongPath(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "wrong path (HTTP 404)",
		expectedClass: "WrongPath",
		spec:          chaos.WebhookSpec{Name: "wrong-path", FailurePolicy: admissionv1.Fail, ReviewProbe: true},
		inject:        answer(backend.AnswerNotFound),
		wantError:     "failed to call webhook: the server could not find the requested resource",
		effect:        "writes rejected",
		// The review probe's "answered HTTP 404", or the API server's
		// rejection code: whichever agent names it first.
		evidence:    "HTTP 404",
		fix:         "clientConfig.service.path, now /validate",
		remediation: "serve the configuration's path again",
		remediate:   answerRight(backend.AnswerNotFound),
	}.feature())
}

// TestServerError: the webhook's handler fails with HTTP 500, quoting a
// certificate error of its own call to another service: the API server
// quotes it, and the webhook's own certificate is not the cause.
func TestServerError(t *testing.T) {
	testenv.Test(t, gameDay{
		name:          "HTTP 500 from the webhook",
		expectedClass: "ServerError",
		spec:          chaos.WebhookSpec{Name: "server-error", FailurePolicy: admissionv1.Fail, ReviewProbe: true},
		inject:        answer(backend.AnswerServerError),
		wantError:     `failed to call webhook: an error on the server (` + quotedServerError + `) has prevented the request from succeeding`,
		effect:        "writes rejected",
		evidence:      "HTTP 500",
		fix:           "answers HTTP 5xx",
		remediation:   "fix the webhook's handler (roll it back)",
		remediate:     answerRight(backend.AnswerServerError),
	}.feature())
}
