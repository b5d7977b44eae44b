package probe

import (
	"net/netip"
	"sync"
	"time"
)

// Own remembers the connections the probes make, from the moment each has
// a local port and before it is dialled, so that the data plane can tell
// the agent's own connections from the API server's: a refused probe must
// never look like a refused call (and start another probe).
type Own struct {
	mu    sync.Mutex
	conns map[ownKey]time.Time
	// kernel, when set, is told each probe port too, so that the kernel
	// keeps the probes' SYNs apart from the API server's.
	kernel PortMarker
}

// PortMarker marks and unmarks local ports as the probes' in the kernel.
type PortMarker interface {
	MarkProbePort(port uint16) error
	UnmarkProbePort(port uint16) error
}

// MarkInKernel makes the registry tell k of every probe port from now on.
func (o *Own) MarkInKernel(k PortMarker) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kernel = k
}

// ownKey is a probe connection: its local port and the backend it dials.
// The local address is chosen at connect; the port, bound first, is
// unique on the host.
type ownKey struct {
	port   uint16
	server netip.AddrPort
}

// ownTTL is how long a probe connection is remembered: its kernel events
// arrive within milliseconds.
const ownTTL = time.Minute

// NewOwn returns an empty registry.
func NewOwn() *Own { return &Own{conns: map[ownKey]time.Time{}} }

// Is reports whether the connection from client to server is a probe's.
func (o *Own) Is(client, server netip.AddrPort) bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.conns[ownKey{client.Port(), unmap(server)}]
	return ok
}

// add remembers a probe connection and forgets the old ones.
func (o *Own) add(port uint16, server netip.AddrPort) {
	if o == nil {
		return
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, at := range o.conns {
		if now.Sub(at) > ownTTL {
			delete(o.conns, k)
			if o.kernel != nil {
				_ = o.kernel.UnmarkProbePort(k.port) // a port left marked only files a stranger's SYN as a probe's
			}
		}
	}
	o.conns[ownKey{port, unmap(server)}] = now
	if o.kernel != nil {
		_ = o.kernel.MarkProbePort(port) // unmarked, the probe's SYN counts as a client's: the ledger errs towards "arrived"
	}
}

// Len is how many probe connections are remembered.
func (o *Own) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.conns)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
