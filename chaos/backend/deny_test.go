package backend

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/hookscope/hookscope/internal/certs"
)

// TestDenial: a policy's denial answers allowed=false with its message for
// the objects it matches, admits the others, holds in a server started
// after it was set, and lifts.
func TestDenial(t *testing.T) {
	ca, err := certs.NewCA("deny-test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cert, err := ca.Serving([]string{"hook.ns.svc"}, nil, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	agent := NewAgent("127.0.0.1:0")
	api := httptest.NewServer(agent.Handler())
	defer api.Close()
	r := Remote{Base: api.URL}
	policy := &Denial{Namespace: "kube-system", Labels: map[string]string{"k8s-app": "aws-node"}, Message: "[host-network] hostNetwork is not allowed"}
	// Set before the server starts: the server started later enforces it.
	if err := r.SetDenial(policy); err != nil {
		t.Fatal(err)
	}
	if err := r.SetCertificate(cert); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "hook.ns.svc"}}}
	review := func(ns, labels string) *admissionv1.AdmissionResponse {
		t.Helper()
		body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","namespace":"` + ns +
			`","object":{"metadata":{"labels":` + labels + `}}}}`)
		resp, err := client.Post("https://"+agent.Addr()+"/validate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || out.Response.UID != "u1" {
			t.Fatalf("answer %+v (%v): want a review with the request's uid", out, err)
		}
		return out.Response
	}
	awsNode := `{"k8s-app":"aws-node"}`
	if got := review("kube-system", awsNode); got.Allowed || got.Result == nil || got.Result.Message != policy.Message || got.Result.Code != http.StatusForbidden {
		t.Errorf("aws-node's pod: %+v, want denied with %q (403)", got, policy.Message)
	}
	for _, c := range []struct{ ns, labels string }{{"kube-system", `{"k8s-app":"kube-proxy"}`}, {"default", awsNode}, {"kube-system", `null`}} {
		if got := review(c.ns, c.labels); !got.Allowed {
			t.Errorf("%s %s: %+v, want allowed", c.ns, c.labels, got)
		}
	}
	if err := r.SetDenial(&Denial{Namespace: "kube-system"}); err != nil {
		t.Fatal(err)
	}
	if got := review("kube-system", `{}`); got.Allowed || got.Result != nil {
		t.Errorf("a denial without a message: %+v, want allowed=false and no status", got)
	}
	if err := r.SetDenial(nil); err != nil {
		t.Fatal(err)
	}
	if got := review("kube-system", awsNode); !got.Allowed {
		t.Errorf("after the denial is lifted: %+v, want allowed", got)
	}
}
