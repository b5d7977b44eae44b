//go:build unix

package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// dial connects to target as a probe: the socket is bound to an ephemeral
// port before it connects, and the port recorded in own, so the data plane
// knows the connection is ours before its first packet. Call done once the
// connection is closed (or the dial failed): the port is released.
func (o *Own) dial(ctx context.Context, target netip.AddrPort) (_ net.Conn, done func(), _ error) {
	if o == nil {
		return plainDial(ctx, target)
	}
	var port uint16
	d := &net.Dialer{Control: func(network, _ string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			var sa unix.Sockaddr = &unix.SockaddrInet4{}
			if network == "tcp6" {
				sa = &unix.SockaddrInet6{}
			}
			if err = unix.Bind(int(fd), sa); err != nil {
				return
			}
			var got unix.Sockaddr
			if got, err = unix.Getsockname(int(fd)); err != nil {
				return
			}
			switch a := got.(type) {
			case *unix.SockaddrInet4:
				port = uint16(a.Port)
			case *unix.SockaddrInet6:
				port = uint16(a.Port)
			default:
				err = fmt.Errorf("the probe's socket is bound to %T, not an IP address", got)
				return
			}
			o.add(port, target)
		})
		if cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("binding the probe's socket: %w", err)
		}
		return nil
	}}
	c, err := d.DialContext(ctx, "tcp", target.String())
	return c, func() { o.release(port, target) }, err
}
