package backend

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Control is what a game day can do to a webhook server: the same knobs
// whether the server runs in this process (in a network namespace, for the
// local provider) or in a pod (kind), where Remote drives it over the
// pod's control port.
type Control interface {
	// SetCertificate serves cert from now on and closes open connections.
	SetCertificate(cert tls.Certificate) error
	// SetDelay makes each review wait d before its answer.
	SetDelay(d time.Duration) error
	// SetSilent makes the server accept connections and never answer.
	SetSilent(silent bool) error
	// SetClosing makes the server accept connections and close them
	// without a word (a sidecar in front of the webhook): the client
	// sees EOF.
	SetClosing(closing bool) error
	// CloseConnections closes the open connections, as a restart would.
	CloseConnections() error
	// SetTLSMaxVersion caps the TLS version of later handshakes (0: none).
	SetTLSMaxVersion(v uint16) error
	// SetAnswer makes the server answer each review with a (on), or admit
	// again (off).
	SetAnswer(a Answer, on bool) error
	// Requests is how many admission reviews were answered.
	Requests() (int64, error)
}

// Local adapts a Server in this process to Control.
type Local struct{ *Server }

// SetCertificate implements Control.
func (l Local) SetCertificate(cert tls.Certificate) error { l.Server.SetCertificate(cert); return nil }

// SetDelay implements Control.
func (l Local) SetDelay(d time.Duration) error { l.Server.SetDelay(d); return nil }

// SetSilent implements Control.
func (l Local) SetSilent(silent bool) error { l.Server.SetSilent(silent); return nil }

// SetClosing implements Control.
func (l Local) SetClosing(closing bool) error { l.Server.SetClosing(closing); return nil }

// SetTLSMaxVersion implements Control.
func (l Local) SetTLSMaxVersion(v uint16) error { l.Server.SetTLSMaxVersion(v); return nil }

// SetAnswer implements Control.
func (l Local) SetAnswer(a Answer, on bool) error { l.Server.SetAnswer(a, on); return nil }

// CloseConnections implements Control.
func (l Local) CloseConnections() error { l.Server.CloseConnections(); return nil }

// Requests implements Control.
func (l Local) Requests() (int64, error) { return l.Server.Requests(), nil }

// Agent runs a webhook server in a pod and takes orders on a plain HTTP
// control port (reached by the game day through a port-forward):
//
//	PUT  /certificate   body: PEM certificate chain then key; serves it (the first one starts the server)
//	PUT  /delay?d=1.5s  each review waits that long
//	PUT  /silent?on=1   accept and never answer
//	PUT  /closing?on=1  accept and close without a word (the client sees EOF)
//	PUT  /serving?on=0  close the webhook port (connections refused); on=1 listens again
//	PUT  /ready?on=0    fail the pod's readiness probe (GET /readyz)
//	PUT  /invalid-response?on=1  answer a response that is not an AdmissionReview
//	PUT  /wrong-uid?on=1         answer without the request's uid
//	PUT  /bad-patch?on=1         answer a JSONPatch that does not apply (BadPatch)
//	PUT  /not-found?on=1         answer HTTP 404 for the review's path
//	PUT  /server-error?on=1      answer HTTP 500
//	                             (on=0: admit again, if that answer was on)
//	PUT  /denial        body: a JSON Denial; deny the reviews it matches (empty body: none)
//	POST /close         close open connections
//	GET  /requests      reviews answered, as a number
//	GET  /readyz        200 once serving and ready
type Agent struct {
	addr string

	mu      sync.Mutex
	srv     *Server
	cert    *tls.Certificate
	serving bool
	ready   bool
	delay   time.Duration
	silent  bool
	closing bool
	tlsMax  uint16
	mode    Answer // how reviews are answered
	served  int64  // reviews answered by servers closed since
	// denial is the policy denial in force (deny.go); nil: none.
	denial *Denial
}

// NewAgent returns an Agent whose webhook server will listen on addr
// (":8443" in a pod).
func NewAgent(addr string) *Agent {
	return &Agent{addr: addr, serving: true, ready: true, mode: AnswerAdmit}
}

// Addr is where the webhook server listens now ("" when it does not).
func (a *Agent) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv == nil {
		return ""
	}
	return a.srv.ln.Addr().String()
}

// Handler is the control API, one handler per route of Agent's table.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /certificate", a.putCertificate)
	mux.HandleFunc("PUT /delay", a.putDelay)
	mux.HandleFunc("PUT /denial", a.putDenial)
	mux.HandleFunc("PUT /tls-max-version", a.putTLSMaxVersion)
	mux.HandleFunc("PUT /silent", a.putSilent)
	mux.HandleFunc("PUT /closing", a.putClosing)
	mux.HandleFunc("PUT /serving", a.putServing)
	mux.HandleFunc("PUT /ready", a.putReady)
	for _, ans := range WrongAnswers {
		mux.HandleFunc("PUT /"+string(ans), a.putAnswer(ans))
	}
	mux.HandleFunc("POST /close", a.postClose)
	mux.HandleFunc("GET /requests", a.getRequests)
	mux.HandleFunc("GET /readyz", a.getReadyz)
	return mux
}

// putCertificate serves the PEM certificate chain and key of the body; the
// first one starts the webhook server.
func (a *Agent) putCertificate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cert, err := tls.X509KeyPair(body, body)
	if err != nil {
		http.Error(w, "parsing the certificate and key: "+err.Error(), http.StatusBadRequest)
		return
	}
	a.reply(w, a.setCertificate(cert))
}

// putDelay makes each review wait ?d= (a Go duration), now and in every
// server started later.
func (a *Agent) putDelay(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("d"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.delay = d
	if a.srv != nil {
		a.srv.SetDelay(d)
	}
	a.mu.Unlock()
}

// putTLSMaxVersion caps the TLS version (?v=1.2, or 0 for none), now and
// in every server started later.
func (a *Agent) putTLSMaxVersion(w http.ResponseWriter, r *http.Request) {
	v, err := parseTLSVersion(r.URL.Query().Get("v"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.tlsMax = v
	if a.srv != nil {
		a.srv.SetTLSMaxVersion(v)
	}
	a.mu.Unlock()
}

// parseTLSVersion reads "1.2", "1.3" or "0".
func parseTLSVersion(s string) (uint16, error) {
	switch s {
	case "0", "":
		return 0, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("TLS version %q: want 1.2, 1.3 or 0", s)
}

// putSilent makes the server accept connections and never answer (?on=1),
// or answer again (?on=0), now and in every server started later.
func (a *Agent) putSilent(w http.ResponseWriter, r *http.Request) {
	a.toggle(w, r, func(on bool) {
		if a.silent = on; a.srv != nil {
			a.srv.SetSilent(on)
		}
	})
}

// toggle reads ?on= and hands it to set, with a.mu held.
func (a *Agent) toggle(w http.ResponseWriter, r *http.Request, set func(on bool)) {
	on, ok := queryBool(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	set(on)
}

// putClosing makes the server close each connection without a word
// (?on=1), or answer again (?on=0), now and in every server started later.
func (a *Agent) putClosing(w http.ResponseWriter, r *http.Request) {
	a.toggle(w, r, func(on bool) {
		if a.closing = on; a.srv != nil {
			a.srv.SetClosing(on)
		}
	})
}

// putAnswer switches answer ans on (?on=1) or off (?on=0: admit again, if
// ans is how the server answers), now and in every server started later.
func (a *Agent) putAnswer(ans Answer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.toggle(w, r, func(on bool) {
			switch {
			case on:
				a.mode = ans
			case a.mode == ans:
				a.mode = AnswerAdmit
			}
			if a.srv != nil {
				a.srv.SetAnswer(ans, on)
			}
		})
	}
}

// putServing closes the webhook port (?on=0) or listens again (?on=1).
func (a *Agent) putServing(w http.ResponseWriter, r *http.Request) {
	on, ok := queryBool(w, r)
	if !ok {
		return
	}
	a.reply(w, a.setServing(on))
}

// putReady fails (?on=0) or passes (?on=1) the pod's readiness probe.
func (a *Agent) putReady(w http.ResponseWriter, r *http.Request) {
	on, ok := queryBool(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	a.ready = on
	a.mu.Unlock()
}

// postClose closes the webhook server's open connections.
func (a *Agent) postClose(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.srv != nil {
		a.srv.CloseConnections()
	}
	a.mu.Unlock()
}

// getRequests answers how many reviews were answered, by the current
// server and by those closed before it, as a JSON number.
func (a *Agent) getRequests(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	n := a.served
	if a.srv != nil {
		n += a.srv.Requests()
	}
	a.mu.Unlock()
	_ = json.NewEncoder(w).Encode(n)
}

// getReadyz is the pod's readiness probe: 200 once serving and ready, 503
// otherwise.
func (a *Agent) getReadyz(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ok := a.ready && a.srv != nil
	a.mu.Unlock()
	if !ok {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}
}

// queryBool parses the request's ?on= parameter; when it is not a bool, it
// answers 400 and returns false.
func queryBool(w http.ResponseWriter, r *http.Request) (on, ok bool) {
	on, err := strconv.ParseBool(r.URL.Query().Get("on"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false, false
	}
	return on, true
}

func (a *Agent) reply(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (a *Agent) setCertificate(cert tls.Certificate) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cert = &cert
	if a.srv != nil {
		a.srv.SetCertificate(cert)
		return nil
	}
	if !a.serving {
		return nil
	}
	return a.listen()
}

func (a *Agent) setServing(on bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.serving = on
	switch {
	case !on && a.srv != nil:
		a.served += a.srv.Requests()
		err := a.srv.Close()
		a.srv = nil
		return err
	case on && a.srv == nil && a.cert != nil:
		return a.listen()
	}
	return nil
}

// listen starts the webhook server with the current settings (a.mu held).
func (a *Agent) listen() error {
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		return fmt.Errorf("listening on the webhook port: %w", err)
	}
	a.srv = Serve(ln, *a.cert)
	a.srv.SetDelay(a.delay)
	a.srv.SetTLSMaxVersion(a.tlsMax)
	a.srv.SetDenial(a.denial)
	if a.silent {
		a.srv.SetSilent(true)
	}
	if a.closing {
		a.srv.SetClosing(true)
	}
	a.srv.SetAnswer(a.mode, true)
	return nil
}

// Remote drives an Agent through its control API at Base (a port-forward
// to the pod's control port).
type Remote struct {
	Base string
	HTTP *http.Client
}

func (r Remote) do(method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequest(method, r.Base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	c := r.HTTP
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("webhook backend control %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("webhook backend control %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// SetCertificate implements Control.
func (r Remote) SetCertificate(cert tls.Certificate) error {
	var pemData bytes.Buffer
	for _, der := range cert.Certificate {
		_ = pem.Encode(&pemData, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("encoding the key for the webhook backend: %w", err)
	}
	_ = pem.Encode(&pemData, &pem.Block{Type: "PRIVATE KEY", Bytes: key})
	_, err = r.do(http.MethodPut, "/certificate", pemData.Bytes())
	return err
}

// SetDelay implements Control.
func (r Remote) SetDelay(d time.Duration) error {
	_, err := r.do(http.MethodPut, "/delay?d="+d.String(), nil)
	return err
}

// SetSilent implements Control.
func (r Remote) SetSilent(silent bool) error {
	_, err := r.do(http.MethodPut, "/silent?on="+strconv.FormatBool(silent), nil)
	return err
}

// SetClosing implements Control.
func (r Remote) SetClosing(closing bool) error {
	_, err := r.do(http.MethodPut, "/closing?on="+strconv.FormatBool(closing), nil)
	return err
}

// SetTLSMaxVersion implements Control.
func (r Remote) SetTLSMaxVersion(v uint16) error {
	name := "0"
	switch v {
	case tls.VersionTLS12:
		name = "1.2"
	case tls.VersionTLS13:
		name = "1.3"
	}
	_, err := r.do(http.MethodPut, "/tls-max-version?v="+name, nil)
	return err
}

// SetAnswer implements Control.
func (r Remote) SetAnswer(a Answer, on bool) error {
	_, err := r.do(http.MethodPut, "/"+string(a)+"?on="+strconv.FormatBool(on), nil)
	return err
}

// SetServing closes the webhook port (false) or listens again (true).
func (r Remote) SetServing(on bool) error {
	_, err := r.do(http.MethodPut, "/serving?on="+strconv.FormatBool(on), nil)
	return err
}

// SetReady makes the pod's readiness probe fail (false) or pass (true).
func (r Remote) SetReady(on bool) error {
	_, err := r.do(http.MethodPut, "/ready?on="+strconv.FormatBool(on), nil)
	return err
}

// CloseConnections implements Control.
func (r Remote) CloseConnections() error {
	_, err := r.do(http.MethodPost, "/close", nil)
	return err
}

// Requests implements Control.
func (r Remote) Requests() (int64, error) {
	b, err := r.do(http.MethodGet, "/requests", nil)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return 0, fmt.Errorf("webhook backend control: requests %q: %w", b, err)
	}
	return n, nil
}
