// Package api serves the agent's read-only HTTP API: its findings, the
// webhooks it knows and its part in them, the risks, and its health.
package api

import (
	"encoding/json"
	"net/http"

	"github.com/hookscope/hookscope/findings"
)

// Source is what the API reads. W is the type of the /webhooks entries and
// R of the /risks entries, each marshalled as JSON.
type Source[W, R any] interface {
	Findings() (open, resolved []findings.Finding)
	Webhooks() []W
	Risks() []R
	Synced() bool
}

// FindingsResponse is the body of GET /findings.
type FindingsResponse struct {
	Open     []findings.Finding `json:"open"`
	Resolved []findings.Finding `json:"resolved"`
}

// Handler serves:
//
//	GET /findings  open and recently resolved findings (FindingsResponse)
//	GET /webhooks  the resolved webhook inventory, with the local and traced backends
//	GET /risks     what could block the cluster before anything breaks (cluster-checks agent only)
//	GET /healthz   200 while the process runs
//	GET /readyz    200 once the inventory has synced and the data plane is loaded (or refused)
func Handler[W, R any](src Source[W, R]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /findings", FindingsHandler(src))
	mux.HandleFunc("GET /webhooks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, nonNil(src.Webhooks()))
	})
	mux.HandleFunc("GET /risks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, nonNil(src.Risks()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !src.Synced() {
			http.Error(w, "not ready: the inventory has not synced or the eBPF programs are still loading", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// FindingsSource is what GET /findings reads.
type FindingsSource interface {
	Findings() (open, resolved []findings.Finding)
}

// FindingsHandler serves GET /findings alone: the agents' peer port serves
// it too when asked to (--peer-findings), for `hookscope findings` through
// the API server's pod proxy.
func FindingsHandler(src FindingsSource) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		open, resolved := src.Findings()
		writeJSON(w, FindingsResponse{Open: nonNil(open), Resolved: nonNil(resolved)})
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
