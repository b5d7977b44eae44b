//go:build !unix

package probe

import (
	"context"
	"net"
	"net/netip"
)

// dial is a plain dial: only Linux has a data plane to tell probes from.
func (o *Own) dial(ctx context.Context, target netip.AddrPort) (net.Conn, func(), error) {
	return plainDial(ctx, target)
}
