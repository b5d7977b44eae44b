package backend

import (
	"encoding/json"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
)

// Answer is how the server answers an AdmissionReview: it admits, or it
// gives one of the wrong answers users lose writes to. A wrong answer
// still completes the handshake and the HTTP exchange: only what comes
// back is wrong.
type Answer string

// The answers.
const (
	// AnswerAdmit: a valid AdmissionReview that allows the request.
	AnswerAdmit Answer = "admit"
	// AnswerInvalidResponse: a response with the request's uid, but not
	// an AdmissionReview (no apiVersion, no kind), as a webhook written
	// against a hand-rolled struct answers.
	AnswerInvalidResponse Answer = "invalid-response"
	// AnswerWrongUID: a valid AdmissionReview whose response.uid is
	// empty, as a webhook that forgets to copy request.uid answers.
	AnswerWrongUID Answer = "wrong-uid"
	// AnswerBadPatch: a mutating answer whose JSONPatch adds to a list the
	// object does not have (BadPatch), as eks-pod-identity-webhook did.
	AnswerBadPatch Answer = "bad-patch"
	// AnswerNotFound: HTTP 404 for the review's path, as a server that
	// serves another path (an upgrade renamed it) answers.
	AnswerNotFound Answer = "not-found"
	// AnswerServerError: HTTP 500 with ServerErrorBody, as a webhook whose
	// handler fails answers.
	AnswerServerError Answer = "server-error"
)

// WrongAnswers are the answers a scenario can switch on, each with its
// control endpoint (PUT /<answer>?on=1).
var WrongAnswers = []Answer{AnswerInvalidResponse, AnswerWrongUID, AnswerBadPatch, AnswerNotFound, AnswerServerError}

// BadPatch is what AnswerBadPatch answers: it adds the first container's
// first environment variable, and the pods the game day writes have none,
// so the list is missing.
const BadPatch = `[{"op":"add","path":"/spec/containers/0/env/0","value":{"name":"HOOKSCOPE_CHAOS","value":"injected"}}]`

// ServerErrorBody is the body of AnswerServerError's HTTP 500: the
// handler's own call to another service failed, on a certificate. The API
// server quotes it, so its text then holds an x509 error that is not the
// webhook's.
const ServerErrorBody = `checking the policy store: Post "https://policy-store.webhooks.svc:8443/check": tls: failed to verify certificate: x509: certificate signed by unknown authority`

// SetAnswer makes the server answer every later review with a (on), or
// admit again (off) if a is how it answers now.
func (s *Server) SetAnswer(a Answer, on bool) {
	if on {
		s.mode.Store(a)
		return
	}
	s.mode.CompareAndSwap(a, AnswerAdmit)
}

// Answer is how the server answers reviews now.
func (s *Server) Answer() Answer {
	if a, ok := s.mode.Load().(Answer); ok {
		return a
	}
	return AnswerAdmit
}

// answerReview answers review, which r carried, as the server answers
// now: with resp, the server's verdict, when it admits; wrongly else.
func (s *Server) answerReview(w http.ResponseWriter, r *http.Request, review *admissionv1.AdmissionReview, resp *admissionv1.AdmissionResponse) {
	switch s.Answer() {
	case AnswerNotFound:
		http.NotFound(w, r)
		return
	case AnswerServerError:
		http.Error(w, ServerErrorBody, http.StatusInternalServerError)
		return
	case AnswerInvalidResponse:
		writeJSON(w, map[string]any{"response": resp})
		return
	case AnswerWrongUID:
		resp.UID = ""
	case AnswerBadPatch:
		jsonPatch := admissionv1.PatchTypeJSONPatch
		resp.Allowed, resp.Patch, resp.PatchType = true, []byte(BadPatch), &jsonPatch
	}
	review.Response = resp
	review.Request = nil
	writeJSON(w, review)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
