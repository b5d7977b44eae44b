package agent

import (
	"encoding/json"
	"net/http"
)

// FindingsResponse is the body of GET /findings.
type FindingsResponse struct {
	Open     []Finding `json:"open"`
	Resolved []Finding `json:"resolved"`
}

// Handler serves the agent's read-only API:
//
//	GET /findings  open and recently resolved findings (FindingsResponse)
//	GET /webhooks  the resolved webhook inventory, with the local and traced backends
//	GET /risks     what could block the cluster before anything breaks (cluster-checks agent only)
//	GET /healthz   200 while the process runs
//	GET /readyz    200 once the inventory has synced
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /findings", func(w http.ResponseWriter, _ *http.Request) {
		open, resolved := a.Findings()
		writeJSON(w, FindingsResponse{Open: nonNil(open), Resolved: nonNil(resolved)})
	})
	mux.HandleFunc("GET /webhooks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, nonNil(a.Webhooks()))
	})
	mux.HandleFunc("GET /risks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, nonNil(a.Risks()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Synced() {
			http.Error(w, "inventory not synced yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
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
