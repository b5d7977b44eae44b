// Package backend is the game day's admission webhook server: a real HTTPS
// server that admits every AdmissionReview it gets, whose serving
// certificate a scenario can swap while it runs (to inject an expired
// certificate and to remediate it), and which can be told to answer
// wrongly (answer.go).
package backend

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// Server answers admission reviews over TLS.
type Server struct {
	cert     atomic.Pointer[tls.Certificate]
	srv      *http.Server
	requests atomic.Int64
	ln       *silentListener
	delay    atomic.Int64 // nanoseconds each review waits before its answer
	mode     atomic.Value // Answer: how reviews are answered (answer.go)
	// maxVersion caps the TLS version the server negotiates (0: none).
	maxVersion atomic.Uint32
	// denial is a policy's denial (deny.go); nil: none.
	denial atomic.Pointer[Denial]

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// Serve starts serving on ln with cert. It returns at once.
func Serve(ln net.Listener, cert tls.Certificate) *Server {
	s := &Server{conns: map[net.Conn]bool{}}
	s.mode.Store(AnswerAdmit)
	s.cert.Store(&cert)
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.admit)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		// Rejected handshakes are what the game day injects; don't log each.
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: s.track,
		TLSConfig: &tls.Config{
			GetCertificate:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
			NextProtos:         []string{"h2", "http/1.1"},
			GetConfigForClient: s.configForClient,
		},
	}
	s.ln = &silentListener{Listener: ln}
	go s.srv.ServeTLS(s.ln, "", "")
	return s
}

// SetSilent makes the server accept connections and never answer them (no
// ServerHello), as a hung webhook process does; false serves again.
func (s *Server) SetSilent(silent bool) {
	s.ln.silent.Store(silent)
	if !silent {
		s.ln.release()
	}
	s.CloseConnections()
}

// SetClosing makes the server accept connections, read what the client
// sends first (its ClientHello) and close them without a word, as a
// service-mesh sidecar in front of the webhook can: the client sees EOF.
// false serves again.
func (s *Server) SetClosing(closing bool) {
	s.ln.closing.Store(closing)
	s.CloseConnections()
}

// silentListener parks the connections it accepts while silent, and
// closes them while closing.
type silentListener struct {
	net.Listener
	silent  atomic.Bool
	closing atomic.Bool
	mu      sync.Mutex
	parked  []net.Conn
}

func (l *silentListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		switch {
		case err != nil:
			return c, err
		case l.closing.Load():
			go closeAfterFirstRead(c)
		case l.silent.Load():
			l.mu.Lock()
			l.parked = append(l.parked, c)
			l.mu.Unlock()
		default:
			return c, nil
		}
	}
}

// closeAfterFirstRead reads what the client sends first, then closes.
func closeAfterFirstRead(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	_, _ = c.Read(buf)
	c.Close()
}

func (l *silentListener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.parked {
		c.Close()
	}
	l.parked = nil
}

func (l *silentListener) Close() error {
	l.release()
	return l.Listener.Close()
}

// SetDelay makes the server wait d before it answers each review (a
// webhook that is slow but answers); 0 answers at once. A request the
// client abandons stops waiting.
func (s *Server) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// SetCertificate makes later handshakes serve cert and closes the open
// connections, as a webhook pod restarted with a new certificate would: the
// API server keeps its connections to a webhook alive, so without this the
// new certificate would not be seen until they idle out.
func (s *Server) SetCertificate(cert tls.Certificate) {
	s.cert.Store(&cert)
	s.CloseConnections()
}

// SetTLSMaxVersion caps the TLS version of later handshakes (tls.VersionTLS12:
// the client's alerts go in cleartext); 0 lifts the cap.
func (s *Server) SetTLSMaxVersion(v uint16) { s.maxVersion.Store(uint32(v)) }

// configForClient is the server's config with the version cap, if any.
func (s *Server) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	v := uint16(s.maxVersion.Load())
	if v == 0 {
		return nil, nil // the server's own config
	}
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
		NextProtos:     []string{"h2", "http/1.1"},
		MaxVersion:     v,
	}, nil
}

// SwapCertificate makes later handshakes serve cert and keeps the open
// connections: a certificate that expires (or is replaced) under a
// connection the API server keeps alive, which goes on carrying writes.
func (s *Server) SwapCertificate(cert tls.Certificate) { s.cert.Store(&cert) }

// CloseConnections closes the open connections, as a restart would.
func (s *Server) CloseConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) track(c net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Requests is how many admission reviews were answered.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Close stops the server and closes its connections.
func (s *Server) Close() error { return s.srv.Close() }

func (s *Server) admit(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/apis/") {
		s.discovery(w, r)
		return
	}
	if r.URL.Path == "/convert" {
		s.convert(w, r)
		return
	}
	var review admissionv1.AdmissionReview
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err == nil && review.Request == nil {
		err = errors.New("admission review has no request")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("decoding admission review: %v", err), http.StatusBadRequest)
		return
	}
	s.requests.Add(1)
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if s.deny(w, &review) {
		return
	}
	s.answerReview(w, r, &review, &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true})
}

// discovery answers an aggregated API's discovery (GET /apis/<group> and
// /apis/<group>/<version>), as an extension API server does: the API
// server's availability check asks for it, and so does every client's
// discovery. The API has no resources, except as metrics.k8s.io (the
// metrics-server's API, at v1beta1), whose pods and nodes lists it
// answers empty, as a metrics-server with nothing scraped yet does.
func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/apis/"), "/"), "/")
	w.Header().Set("Content-Type", "application/json")
	group, version, resources := parts[0], "v1alpha1", []any{}
	if group == metricsGroup {
		version = "v1beta1"
		resources = []any{
			map[string]any{"name": "pods", "namespaced": true, "kind": "PodMetrics", "verbs": []string{"get", "list"}},
			map[string]any{"name": "nodes", "namespaced": false, "kind": "NodeMetrics", "verbs": []string{"get", "list"}},
		}
	}
	switch {
	case len(parts) == 1:
		gv := map[string]string{"groupVersion": group + "/" + version, "version": version}
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIGroup", "apiVersion": "v1", "name": group,
			"versions": []any{gv}, "preferredVersion": gv})
	case len(parts) == 2:
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": "APIResourceList", "apiVersion": "v1",
			"groupVersion": group + "/" + parts[1], "resources": resources})
	case group == metricsGroup && (parts[len(parts)-1] == "pods" || parts[len(parts)-1] == "nodes"):
		kind := map[string]string{"pods": "PodMetricsList", "nodes": "NodeMetricsList"}[parts[len(parts)-1]]
		_ = json.NewEncoder(w).Encode(map[string]any{"kind": kind, "apiVersion": metricsGroup + "/" + version,
			"metadata": map[string]any{}, "items": []any{}})
	default:
		http.NotFound(w, r)
	}
}

// metricsGroup is metrics-server's API group.
const metricsGroup = "metrics.k8s.io"

// conversionReview is the part of an apiextensions.k8s.io/v1
// ConversionReview the backend reads and writes.
type conversionReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID               string           `json:"uid"`
		DesiredAPIVersion string           `json:"desiredAPIVersion"`
		Objects           []map[string]any `json:"objects"`
	} `json:"request,omitempty"`
	Response *conversionResponse `json:"response,omitempty"`
}

type conversionResponse struct {
	UID              string           `json:"uid"`
	ConvertedObjects []map[string]any `json:"convertedObjects"`
	Result           map[string]any   `json:"result"`
}

// convert answers a CRD's conversion webhook: the versions share one
// schema, so converting is setting apiVersion.
func (s *Server) convert(w http.ResponseWriter, r *http.Request) {
	var review conversionReview
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err == nil && review.Request == nil {
		err = errors.New("conversion review has no request")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("decoding conversion review: %v", err), http.StatusBadRequest)
		return
	}
	s.requests.Add(1)
	resp := &conversionResponse{UID: review.Request.UID, Result: map[string]any{"status": "Success"}}
	for _, o := range review.Request.Objects {
		o["apiVersion"] = review.Request.DesiredAPIVersion
		resp.ConvertedObjects = append(resp.ConvertedObjects, o)
	}
	review.Request, review.Response = nil, resp
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
