//go:build !linux

package dataplane

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
)

// Kernel exists only on Linux; this stub keeps the agent building
// elsewhere (handshake.Load fails there first).
type Kernel struct{}

// NewKernel is never reached off Linux.
func NewKernel(*handshake.Tracer, *tcpstate.Tracer, *Assembler, *slog.Logger) *Kernel {
	return &Kernel{}
}

// Run returns at once.
func (*Kernel) Run(context.Context) {}

// SetBackends does nothing.
func (*Kernel) SetBackends([]Backend) error { return nil }

// Tracing finds nothing traced.
func (*Kernel) Tracing(netip.AddrPort) (Tracing, bool) { return Tracing{}, false }

// EventsDropped is always zero.
func (*Kernel) EventsDropped() (uint64, error) { return 0, nil }

// Unparsed is always empty.
func (*Kernel) Unparsed() (map[string]uint64, error) { return nil, nil }

// Counted is nil: there is no kernel to count.
func (*Kernel) Counted() (map[string]uint64, error) { return nil, nil }

// Arrivals is always empty.
func (*Kernel) Arrivals(netip.AddrPort) (Arrivals, error) { return Arrivals{}, nil }

// MarkProbePort does nothing.
func (*Kernel) MarkProbePort(uint16) error { return nil }

// UnmarkProbePort does nothing.
func (*Kernel) UnmarkProbePort(uint16) error { return nil }

// OnNode finds nothing off Linux.
func (*Kernel) OnNode(netip.Addr) bool { return false }
