package agent

import (
	"crypto/sha256"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/inventory"
)

// view is the inventory as the agent acts on it. It is built whole on each
// resolution and never changed after: readers load it without a lock.
type view struct {
	synced   bool
	list     []callout.Webhook // as the inventory resolved them
	webhooks map[callout.Ref]callout.Webhook
	byName   map[string]callout.Ref
	// local are the backends this agent traces and probes, per webhook.
	local map[probeKey]bool
	// targets are the probes to make: webhooks that share a backend, a
	// server name and a caBundle share one probe.
	targets map[probeTarget][]callout.Ref
	// remote are the probes of backends on other nodes, for the Lease
	// holder when no agent runs there; remoteNode is each one's node.
	remote     map[probeTarget][]callout.Ref
	remoteNode map[probeTarget]string
	backends   []dataplane.Backend
	// logged holds what was said of webhooks that cannot be probed, so it
	// is said once per change, not per resolution.
	logged map[callout.Ref]string
}

// probeKey is one webhook's view of one backend.
type probeKey struct {
	ref     callout.Ref
	backend netip.AddrPort
}

// probeTarget is one probe. Webhooks that share a backend may trust
// different CAs or expect another name; those that agree on all of it
// (often: every webhook of one server) share the probe. A webhook that
// calls a URL has its own (url is set, backend is not).
type probeTarget struct {
	backend    netip.AddrPort
	serverName string
	ca         [sha256.Size]byte
	path       string // with review probes only: they post to it
	url        callout.Ref
	skipVerify bool // an APIService with insecureSkipTLSVerify
}

// targetOf is the probe of webhook w's backend at addr.
func (a *Agent) targetOf(w callout.Webhook, addr netip.AddrPort) probeTarget {
	t := probeTarget{backend: addr, serverName: w.ServerName(), ca: sha256.Sum256(w.CABundle), skipVerify: w.InsecureSkipTLSVerify}
	if w.ReviewProbed(a.cfg.ReviewProbe) && w.Service != nil {
		t.path = w.Service.Path
	}
	return t
}

// isLocal reports whether b is this agent's to trace and probe.
func (a *Agent) isLocal(b callout.Backend) bool {
	if a.cfg.NodeName == "" {
		return true
	}
	return b.Pod != nil && b.Pod.Node == a.cfg.NodeName
}

// newView builds the view of ws.
func (a *Agent) newView(ws []callout.Webhook, prev *view) *view {
	v := &view{synced: true, list: ws, webhooks: map[callout.Ref]callout.Webhook{}, byName: map[string]callout.Ref{},
		local: map[probeKey]bool{}, targets: map[probeTarget][]callout.Ref{}, logged: map[callout.Ref]string{},
		remote: map[probeTarget][]callout.Ref{}, remoteNode: map[probeTarget]string{}}
	byAddr := map[netip.AddrPort]*dataplane.Backend{}
	for _, w := range ws {
		v.webhooks[w.Ref] = w
		if _, dup := v.byName[w.Ref.Name]; !dup {
			v.byName[w.Ref.Name] = w.Ref
		}
		if said, ok := prev.logged[w.Ref]; ok {
			v.logged[w.Ref] = said
		}
		backends, onNode := w.Backends, false
		if addr, ok := a.urlOnNode(w); ok {
			backends, onNode = []callout.Backend{{Addr: addr}}, true
		} else if callsURL(w) {
			v.targets[probeTarget{url: w.Ref}] = []callout.Ref{w.Ref}
		}
		for _, b := range backends {
			if !onNode && !a.isLocal(b) {
				if w.Service != nil && w.Invalid == "" {
					t := a.targetOf(w, b.Addr)
					v.remote[t] = append(v.remote[t], w.Ref)
					if b.Pod != nil {
						v.remoteNode[t] = b.Pod.Node
					}
				}
				continue
			}
			v.local[probeKey{w.Ref, b.Addr}] = true
			if w.Invalid == "" {
				t := a.targetOf(w, b.Addr)
				v.targets[t] = append(v.targets[t], w.Ref)
			}
			db := byAddr[b.Addr]
			if db == nil {
				db = &dataplane.Backend{Addr: b.Addr, Pod: b.Pod}
				byAddr[b.Addr] = db
			}
			db.Webhooks = append(db.Webhooks, w)
		}
	}
	for _, b := range byAddr {
		v.backends = append(v.backends, *b)
	}
	slices.SortFunc(v.backends, func(x, y dataplane.Backend) int { return x.Addr.Compare(y.Addr) })
	return v
}

// setWebhooks acts on a new resolution: it traces the local backends,
// probes the new ones, resolves the findings of what is gone and wakes the
// object checks.
func (a *Agent) setWebhooks(ws []callout.Webhook) {
	a.viewMu.Lock()
	defer a.viewMu.Unlock()
	prev := a.view.Load()
	v := a.newView(ws, prev)
	a.view.Store(v)
	a.noteSynced()
	a.cfg.Logger.Info("inventory", "webhooks", len(ws), "local_backends", len(v.backends))
	for _, w := range ws {
		a.cfg.Logger.Debug("webhook", "ref", w.Ref.String(), "failurePolicy", w.FailurePolicy, "backends", inventory.Describe(w.Backends))
		a.sayOnce(v, w)
	}
	path := map[probeKey]bool{}
	for _, c := range []findings.Class{findings.BlockedBeforeNode, findings.DroppedAtPod} {
		for _, f := range a.store.OpenOfClass(c) {
			path[probeKey{f.Webhook, f.Backend}] = true
		}
	}
	a.store.Retain(func(k findings.Key) bool {
		switch k.Scope {
		case findings.ScopeObjects:
			_, ok := v.webhooks[k.Webhook]
			return ok
		case findings.ScopeRemote:
			w, ok := v.webhooks[k.Webhook]
			_, has := w.Backend(k.Backend)
			return ok && has
		}
		if v.local[probeKey{k.Webhook, k.Backend}] {
			return true
		}
		// The Lease holder's verdicts on where the packets stop are
		// about backends on other nodes: kept while the backend is.
		w, ok := v.webhooks[k.Webhook]
		_, has := w.Backend(k.Backend)
		return ok && has && path[probeKey{k.Webhook, k.Backend}]
	})
	a.queue.Add(task{sync: true})
	for t := range v.targets {
		if _, known := prev.targets[t]; !known && t.backend.IsValid() {
			a.queue.Add(task{target: t})
		}
	}
	a.wakeObjects()
}

// sayOnce logs, once per change, why a webhook is not probed, or how a
// webhook that calls a URL is.
func (a *Agent) sayOnce(v *view, w callout.Webhook) {
	var said string
	switch {
	case w.Invalid != "":
		said = "invalid|" + w.Invalid
	case w.Service == nil && w.URL != "":
		addr, _ := a.urlOnNode(w)
		said = "url|" + w.URL + "|" + addr.String()
	default:
		return
	}
	if v.logged[w.Ref] == said {
		return
	}
	v.logged[w.Ref] = said
	if w.Invalid != "" {
		a.cfg.Logger.Warn("webhook configuration cannot be called as written: not probed", "webhook", w.Ref.String(), "problem", w.Invalid)
		return
	}
	if addr, ok := a.urlOnNode(w); ok {
		a.cfg.Logger.Info("webhook calls a URL served on this node: traced and probed here", "webhook", w.Ref.String(), "url", w.URL, "address", addr)
		return
	}
	a.cfg.Logger.Info("webhook calls a URL, not a Service: the agent holding the Lease probes it; the agent of the node that holds its address, if any, traces it", "webhook", w.Ref.String(), "url", w.URL)
}

// Webhook returns the webhook ref names, as the inventory resolved it.
func (a *Agent) Webhook(ref callout.Ref) (callout.Webhook, bool) {
	w, ok := a.view.Load().webhooks[ref]
	return w, ok
}

// APIServiceFor is the aggregated API that serves group/version gv.
func (a *Agent) APIServiceFor(gv string) (callout.Webhook, bool) {
	for _, w := range a.view.Load().webhooks {
		if w.IsAPIService() && w.API == gv {
			return w, true
		}
	}
	return callout.Webhook{}, false
}

// APIServiceOfGroup is an aggregated API that serves group.
func (a *Agent) APIServiceOfGroup(group string) (callout.Webhook, bool) {
	for _, w := range a.view.Load().webhooks {
		if w.IsAPIService() && strings.HasPrefix(w.API, group+"/") {
			return w, true
		}
	}
	return callout.Webhook{}, false
}

// ConversionFor is the conversion webhook of the CRD of kind in group.
func (a *Agent) ConversionFor(group, kind string) (callout.Webhook, bool) {
	for _, w := range a.view.Load().webhooks {
		// A conversion's API reads "<Kind>.<group> (versions ...)".
		if w.IsConversion() && strings.HasSuffix(w.Ref.Name, "."+group) && strings.HasPrefix(w.API, kind+"."+group+" ") {
			return w, true
		}
	}
	return callout.Webhook{}, false
}

// HasNamespaceBlockers reports whether any aggregated API or conversion
// webhook is a call-out.
func (a *Agent) HasNamespaceBlockers() bool {
	for _, w := range a.view.Load().webhooks {
		if w.IsAPIService() || w.IsConversion() {
			return true
		}
	}
	return false
}

// WebhookByName finds a webhook of the inventory by its name: the API
// server's texts name the webhook but not its configuration. Unknown names
// give a Webhook with only the name.
func (a *Agent) WebhookByName(name string) (callout.Webhook, bool) {
	v := a.view.Load()
	if ref, ok := v.byName[name]; ok {
		return v.webhooks[ref], true
	}
	return callout.Webhook{Ref: callout.Ref{Name: name}}, false
}

// SlowAfter is the latency above which webhook name's calls are slow.
func (a *Agent) SlowAfter(name string) time.Duration {
	w, _ := a.WebhookByName(name)
	if w.TimeoutSeconds == 0 {
		w.TimeoutSeconds = 10
	}
	return a.asm.SlowAfter(w)
}

// WebhookStatus is a webhook of the inventory with what this agent does
// with its backends.
type WebhookStatus struct {
	callout.Webhook
	// Problem is what the object checks say of it ("" until they can).
	Problem       findings.Class `json:"problem,omitempty"`
	ProblemDetail string         `json:"problemDetail,omitempty"`
	// Local are the backends on this agent's node: it probes them.
	Local []netip.AddrPort `json:"local"`
	// Traced are the local backends the kernel traces now.
	Traced []netip.AddrPort `json:"traced"`
	// Untraced are the backends on nodes no agent runs on: no kernel sees
	// their calls; the agent holding the Lease probes them.
	Untraced []netip.AddrPort `json:"untraced"`
}

// Webhooks returns the current inventory and this agent's part in it.
func (a *Agent) Webhooks() []WebhookStatus {
	var out []WebhookStatus
	covered, _ := a.agentNodes()
	dp := a.dataPlane()
	for _, w := range a.inv.Webhooks() {
		st := WebhookStatus{Webhook: w, Local: []netip.AddrPort{}, Traced: []netip.AddrPort{}, Untraced: []netip.AddrPort{}}
		if c, d := inventory.Problem(w); c != findings.Healthy {
			st.Problem, st.ProblemDetail = c, d
		}
		if addr, ok := a.urlOnNode(w); ok { // a URL served on this node
			st.Local = append(st.Local, addr)
			if _, ok := tracing(dp, addr); ok {
				st.Traced = append(st.Traced, addr)
			}
		}
		for _, b := range w.Backends {
			if !a.isLocal(b) {
				if b.Pod == nil || !covered[b.Pod.Node] {
					st.Untraced = append(st.Untraced, b.Addr)
				}
				continue
			}
			st.Local = append(st.Local, b.Addr)
			// An address another pod had may still be traced at that
			// pod's interface: this one is traced once the agent attaches.
			if t, ok := tracing(dp, b.Addr); ok && t.SamePod(b.Pod) {
				st.Traced = append(st.Traced, b.Addr)
			}
		}
		out = append(out, st)
	}
	return out
}

// tracing is dp.Tracing, with no data plane tracing nothing.
func tracing(dp DataPlane, addr netip.AddrPort) (dataplane.Tracing, bool) {
	if dp == nil {
		return dataplane.Tracing{}, false
	}
	return dp.Tracing(addr)
}

// agentNodes are the nodes an agent runs on: Config.AgentNodes, or this
// agent's node when that is not known.
func (a *Agent) agentNodes() (map[string]bool, bool) {
	if a.cfg.AgentNodes != nil {
		if nodes, ok := a.cfg.AgentNodes(); ok {
			return nodes, true
		}
	}
	return map[string]bool{a.cfg.NodeName: true}, a.cfg.AgentNodes == nil
}

// untraced says why no agent traces a backend on node, or "" when one does.
func untraced(node string, covered map[string]bool) string {
	switch {
	case node == "":
		return "no node is named for this backend: no hookscope agent traces it; probed from the agent holding the Lease"
	case covered[node]:
		return ""
	}
	return "no hookscope agent runs on node " + node + " (Fargate, or a node the DaemonSet leaves out): no kernel sees its calls; probed from the agent holding the Lease"
}
