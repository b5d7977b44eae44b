package agentcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/api"
	"github.com/hookscope/hookscope/dataplane"
)

// The agents' peer port: the agent that holds the Lease reads there what
// another node's kernel saw of the API server's connections to a backend
// (its SYN ledger), to say whether the API server's packets reach that
// node. It serves GET /ledger: counts and times of SYNs, nothing of the
// webhooks' requests; with --peer-findings also GET /findings, this
// agent's findings, which `hookscope findings` reads through the API
// server's pod proxy (the API port stays on loopback).

// servePeer serves GET /ledger?backend=IP:PORT on addr and, when
// withFindings, GET /findings.
func servePeer(addr string, a *agent.Agent, withFindings bool) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("listening on %s for the agents' peer port: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ledger", func(w http.ResponseWriter, r *http.Request) {
		backend, err := netip.ParseAddrPort(r.URL.Query().Get("backend"))
		if err != nil {
			http.Error(w, "backend: want IP:PORT", http.StatusBadRequest)
			return
		}
		l, ok := a.Ledger(backend)
		if !ok {
			http.Error(w, "this node's agent does not trace "+backend.String(), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l)
	})
	if withFindings {
		mux.HandleFunc("GET /findings", api.FindingsHandler(a))
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String(), nil
}

// peerLedger reads the ledger of the agent on a node, at its pod's IP (the
// node's: the agents run on the host network) and the peer port.
func (p *agentPodSet) peerLedger(port int) agent.PeerLedger {
	client := &http.Client{Timeout: 3 * time.Second}
	return func(ctx context.Context, node string, backend netip.AddrPort) (dataplane.Ledger, error) {
		ip, ok := p.podIP(node)
		if !ok {
			return dataplane.Ledger{}, fmt.Errorf("no agent known on node %s", node)
		}
		u := url.URL{Scheme: "http", Host: net.JoinHostPort(ip, strconv.Itoa(port)), Path: "/ledger",
			RawQuery: url.Values{"backend": {backend.String()}}.Encode()}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return dataplane.Ledger{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return dataplane.Ledger{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return dataplane.Ledger{}, fmt.Errorf("%s: %s: %s", u.String(), resp.Status, msg)
		}
		var l dataplane.Ledger
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&l); err != nil {
			return dataplane.Ledger{}, fmt.Errorf("%s: %w", u.String(), err)
		}
		return l, nil
	}
}

// podIP is the IP of the agent's pod on node.
func (p *agentPodSet) podIP(node string) (string, bool) {
	ip := p.informer.Load()
	if ip == nil {
		return "", false
	}
	for _, o := range (*ip).GetStore().List() {
		if pod, ok := o.(*corev1.Pod); ok && pod.Spec.NodeName == node && pod.DeletionTimestamp == nil && pod.Status.PodIP != "" {
			return pod.Status.PodIP, true
		}
	}
	return "", false
}
