package agent

import (
	"context"
	"maps"
	"net/netip"
	"net/url"
	"time"

	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/probe"
)

// Webhooks that call a URL (clientConfig.url, no Service). The agent
// holding the Lease probes each URL as the API server calls it: the host
// resolved, TLS with the host as the server name and the caBundle as the
// only roots. A URL whose address is on a node (a pod's behind its veth,
// or the node's own, as a hostNetwork server's) is traced there as well,
// and that node's agent probes it instead: its calls, latency and wire
// failures are seen as a Service's backend's are, and its findings name
// the address. The Lease holder then still probes a URL served on another
// node, so an outage there can show twice: once from the wire and the
// node's probe, once from the Lease holder's probe of the URL.

// urlResolveTimeout bounds one URL name's lookup.
const urlResolveTimeout = 2 * time.Second

// callsURL reports whether w calls a URL (no Service): no objects to
// check; the Lease holder probes the URL, and the node that holds its
// address traces it.
func callsURL(w callout.Webhook) bool { return w.Service == nil && w.URL != "" && w.Invalid == "" }

// urlOnNode is the address w's URL names, when it is on this node.
func (a *Agent) urlOnNode(w callout.Webhook) (netip.AddrPort, bool) {
	dp := a.dataPlane()
	if dp == nil || !callsURL(w) {
		return netip.AddrPort{}, false
	}
	addr, ok := a.urlAddr(w.URL)
	if !ok || !dp.OnNode(addr.Addr()) {
		return netip.AddrPort{}, false
	}
	return addr, true
}

// urlAddr is the address a URL names: at once for an IP address, and for
// a name once resolveURLs has looked it up.
func (a *Agent) urlAddr(raw string) (netip.AddrPort, bool) {
	if u, err := url.Parse(raw); err == nil && isAddr(u.Hostname()) {
		addr, err := probe.ResolveURL(context.Background(), raw) // an address: no lookup
		return addr, err == nil
	}
	if names := a.urlNames.Load(); names != nil {
		addr, ok := (*names)[raw]
		return addr, ok
	}
	return netip.AddrPort{}, false
}

// resolveURLs looks up the names of the URLs webhooks call, on every
// agent (each may be the node that serves one); when an address changed,
// the view is built again so that node traces it.
func (a *Agent) resolveURLs(ctx context.Context, v *view) {
	if a.dataPlane() == nil {
		return
	}
	names := map[string]netip.AddrPort{}
	for _, w := range v.webhooks {
		if !callsURL(w) {
			continue
		}
		if u, err := url.Parse(w.URL); err != nil || isAddr(u.Hostname()) {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, urlResolveTimeout)
		addr, err := probe.ResolveURL(lctx, w.URL)
		cancel()
		if err == nil {
			names[w.URL] = addr
		}
	}
	prev := a.urlNames.Swap(&names)
	if (prev == nil && len(names) == 0) || (prev != nil && maps.Equal(*prev, names)) {
		return
	}
	a.setWebhooks(v.list)
}

func isAddr(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}
