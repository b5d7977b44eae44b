//go:build !unix

package probe

import (
	"net"
	"net/netip"
)

// dialer is a plain dialer: only Linux has a data plane to tell probes from.
func (o *Own) dialer(netip.AddrPort) *net.Dialer { return &net.Dialer{} }
