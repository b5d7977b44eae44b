package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Denial makes the server a policy webhook (Kyverno, Gatekeeper): it
// answers allowed=false, with Message, for the reviews of objects in
// Namespace whose labels hold every one of Labels, and admits every other
// review as before. The API server then words its answer to the client as
// `admission webhook "NAME" denied the request: MESSAGE` (or "denied the
// request without explanation" when Message is empty).
type Denial struct {
	// Namespace is the reviewed object's namespace ("" matches any).
	Namespace string `json:"namespace,omitempty"`
	// Labels the object must carry, e.g. k8s-app=aws-node.
	Labels map[string]string `json:"labels,omitempty"`
	// Message is the policy's reason, as the webhook sends it in
	// response.status.message.
	Message string `json:"message,omitempty"`
}

// Denier is a webhook server that can enforce a Denial: Local and Remote.
type Denier interface {
	// SetDenial enforces d from now on; nil admits everything again.
	SetDenial(d *Denial) error
}

// SetDenial enforces d from now on; nil admits every review again.
func (s *Server) SetDenial(d *Denial) { s.denial.Store(d) }

// deny answers review with a denial when the Denial in force matches its
// object, and reports whether it did; otherwise the server answers as it
// would.
func (s *Server) deny(w http.ResponseWriter, review *admissionv1.AdmissionReview) bool {
	d := s.denial.Load()
	if d == nil || !d.matches(review.Request) {
		return false
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: false}
	if d.Message != "" {
		// As Gatekeeper and Kyverno answer: 403 and the policy's words.
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Message: d.Message}
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
	return true
}

// matches reports whether the reviewed object is one d denies.
func (d *Denial) matches(req *admissionv1.AdmissionRequest) bool {
	if d.Namespace != "" && req.Namespace != d.Namespace {
		return false
	}
	if len(d.Labels) == 0 {
		return true
	}
	var obj struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if json.Unmarshal(req.Object.Raw, &obj) != nil {
		return false
	}
	for k, v := range d.Labels {
		if got, ok := obj.Metadata.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// SetDenial implements Denier.
func (l Local) SetDenial(d *Denial) error { l.Server.SetDenial(d); return nil }

// putDenial enforces the Denial of the JSON body, now and in every server
// started later; an empty body (or "null") admits everything again.
func (a *Agent) putDenial(w http.ResponseWriter, r *http.Request) {
	var d *Denial
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "decoding the denial: "+err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.denial = d
	if a.srv != nil {
		a.srv.SetDenial(d)
	}
	a.mu.Unlock()
}

// SetDenial implements Denier.
func (r Remote) SetDenial(d *Denial) error {
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding the denial: %w", err)
	}
	_, err = r.do(http.MethodPut, "/denial", body)
	return err
}
