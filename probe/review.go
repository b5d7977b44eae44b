package probe

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hookscope/hookscope/findings"
)

// Review makes a probe also send one AdmissionReview, as the API server
// does, to time the webhook's answer. It is opt-in: the webhook sees a
// request (dryRun, for a Namespace named hookscope-probe, which it may
// deny or fail to decode; only the time to its answer is judged).
type Review struct {
	// Path is the webhook's path on its Service ("/" if empty).
	Path string
	// SlowAfter: an answer that takes longer is SlowResponse.
	SlowAfter time.Duration
}

// maxReviewAnswer caps the answer a review probe reads.
const maxReviewAnswer = 1 << 20

// probeNamespace is the object the review asks about.
const probeNamespace = "hookscope-probe"

// request is the AdmissionReview a review probe sends.
func request(uid string) ([]byte, error) {
	ns, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]string{"name": probeNamespace}})
	if err != nil {
		return nil, err
	}
	dryRun := true
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uid),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
			Name:      probeNamespace,
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: probeNamespace},
			Object:    runtime.RawExtension{Raw: ns},
			DryRun:    &dryRun,
		},
	})
}

// send posts one AdmissionReview on conn and records the answer's time,
// status and whether it answered our UID; a slow answer, or none in time,
// is SlowResponse.
func (rv *Review) send(conn net.Conn, serverName string, r *Result) {
	var id [16]byte
	_, _ = rand.Read(id[:])
	uid := hex.EncodeToString(id[:])
	body, err := request(uid)
	if err != nil {
		r.Detail = "review probe: " + err.Error()
		return
	}
	path := rv.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequest(http.MethodPost, "https://"+serverName+path, bytes.NewReader(body))
	if err != nil {
		r.Detail = "review probe: " + err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	err = req.Write(conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(conn), req)
	}
	r.Response = time.Since(start)
	if err != nil {
		if dialTimeout(err) {
			r.Class = findings.SlowResponse
			r.Detail = fmt.Sprintf("review probe: no answer in %s", r.Response.Round(time.Millisecond))
			return
		}
		r.Detail = "review probe: " + err.Error()
		return
	}
	defer resp.Body.Close()
	r.ResponseStatus = resp.StatusCode
	var answer admissionv1.AdmissionReview
	if json.NewDecoder(io.LimitReader(resp.Body, maxReviewAnswer)).Decode(&answer) == nil && answer.Response != nil {
		r.ReviewAnswered = string(answer.Response.UID) == uid
	}
	if rv.SlowAfter > 0 && r.Response >= rv.SlowAfter {
		r.Class = findings.SlowResponse
		r.Detail = fmt.Sprintf("review probe: answered HTTP %d in %s, above the %s threshold", resp.StatusCode, r.Response.Round(time.Millisecond), rv.SlowAfter)
	}
}
