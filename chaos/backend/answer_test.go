package backend

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/hookscope/hookscope/internal/certs"
)

// TestWrongAnswers drives each wrong answer through the control API, as
// the game day does on kind, and reads what a review gets back; off, the
// server admits again, and a server started later answers as told.
func TestWrongAnswers(t *testing.T) {
	ca, err := certs.NewCA("answers-test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Serving([]string{"hook.ns.svc"}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	agent := NewAgent("127.0.0.1:0")
	api := httptest.NewServer(agent.Handler())
	defer api.Close()
	r := Remote{Base: api.URL}
	if err := r.SetCertificate(cert); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "hook.ns.svc"}}}
	review := func() (int, string) {
		t.Helper()
		body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","object":{"kind":"Pod"}}}`)
		resp, err := client.Post("https://"+agent.Addr()+"/mutate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	admitted := func(body string) bool {
		var rv admissionv1.AdmissionReview
		return json.Unmarshal([]byte(body), &rv) == nil && rv.Kind == "AdmissionReview" && rv.Response != nil && rv.Response.UID == "u1" && rv.Response.Allowed && rv.Response.Patch == nil
	}
	for _, c := range []struct {
		answer Answer
		status int
		has    string
	}{
		{AnswerInvalidResponse, 200, `{"response":{"uid":"u1","allowed":true}}`},
		{AnswerWrongUID, 200, `"response":{"uid":"","allowed":true}`},
		{AnswerBadPatch, 200, `"patchType":"JSONPatch"`},
		{AnswerNotFound, 404, "404 page not found"},
		{AnswerServerError, 500, ServerErrorBody},
	} {
		if err := r.SetAnswer(c.answer, true); err != nil {
			t.Fatal(err)
		}
		status, body := review()
		if status != c.status || !strings.Contains(body, c.has) {
			t.Errorf("%s: HTTP %d %q, want %d with %q", c.answer, status, body, c.status, c.has)
		}
		if err := r.SetAnswer(c.answer, false); err != nil {
			t.Fatal(err)
		}
		if status, body := review(); status != 200 || !admitted(body) {
			t.Errorf("after %s off: HTTP %d %q, want an admission", c.answer, status, body)
		}
	}
	// Off for another answer than the one on leaves it on.
	if err := r.SetAnswer(AnswerNotFound, true); err != nil {
		t.Fatal(err)
	}
	if err := r.SetAnswer(AnswerServerError, false); err != nil {
		t.Fatal(err)
	}
	if status, _ := review(); status != 404 {
		t.Errorf("server-error off turned not-found off: HTTP %d", status)
	}
	// A server started later (a restarted pod) answers as told.
	if err := r.SetServing(false); err != nil {
		t.Fatal(err)
	}
	if err := r.SetServing(true); err != nil {
		t.Fatal(err)
	}
	if status, _ := review(); status != 404 {
		t.Errorf("a restarted server forgot not-found: HTTP %d", status)
	}
	if _, err := r.do(http.MethodPut, "/bad-patch?on=maybe", nil); err == nil {
		t.Error("on=maybe was taken")
	}
}
