//go:build unix

package probe

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// dialer binds each probe socket to an ephemeral port before it connects
// and records it in own: the data plane knows the connection is ours
// before its first packet.
func (o *Own) dialer(target netip.AddrPort) *net.Dialer {
	if o == nil {
		return &net.Dialer{}
	}
	return &net.Dialer{Control: func(network, _ string, c syscall.RawConn) error {
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
				o.add(uint16(a.Port), target)
			case *unix.SockaddrInet6:
				o.add(uint16(a.Port), target)
			}
		})
		if cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("binding the probe's socket: %w", err)
		}
		return nil
	}}
}
