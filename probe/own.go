package probe

import (
	"context"
	"net"
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
	conns map[ownKey]ownConn
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

// ownConn is how long a probe connection is remembered, and whether its
// port is still marked in the kernel.
type ownConn struct {
	until  time.Time
	marked bool
}

// ownTTL is how long a probe connection is remembered if nothing says it
// ended.
const ownTTL = time.Minute

// ownLinger is how long a probe connection is remembered once its socket
// closed: its kernel events reach the agent within the ring buffers' poll
// (50 ms). The port is free again for any client on the host, the API
// server's too: remembered longer, the API server's connection from it
// would be taken for a probe's (seen: a failed call's SYN filed as a
// probe's, and "no SYN from the API server reached the pod").
const ownLinger = 2 * time.Second

// NewOwn returns an empty registry.
func NewOwn() *Own { return &Own{conns: map[ownKey]ownConn{}} }

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

// add remembers a probe connection and forgets those whose time is up.
func (o *Own) add(port uint16, server netip.AddrPort) {
	if o == nil {
		return
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, c := range o.conns {
		if now.After(c.until) {
			delete(o.conns, k)
			if c.marked && o.kernel != nil {
				_ = o.kernel.UnmarkProbePort(k.port) // a port left marked only files a stranger's SYN as a probe's
			}
		}
	}
	o.conns[ownKey{port, unmap(server)}] = ownConn{until: now.Add(ownTTL), marked: o.kernel != nil}
	if o.kernel != nil {
		_ = o.kernel.MarkProbePort(port) // unmarked, the probe's SYN counts as a client's: the ledger errs towards "arrived"
	}
}

// release says the probe's socket on port closed: the kernel stops filing
// the port's SYNs as a probe's at once (the probe sends none any more),
// and the agent forgets the connection once its events are in.
func (o *Own) release(port uint16, server netip.AddrPort) {
	if o == nil || port == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	k := ownKey{port, unmap(server)}
	c, ok := o.conns[k]
	if !ok {
		return
	}
	o.conns[k] = ownConn{until: time.Now().Add(ownLinger)}
	if c.marked && o.kernel != nil {
		_ = o.kernel.UnmarkProbePort(port)
	}
}

// plainDial connects to target with no registry to tell.
func plainDial(ctx context.Context, target netip.AddrPort) (net.Conn, func(), error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target.String())
	return c, func() {}, err
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
