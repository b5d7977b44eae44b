//go:build !linux

package agent

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/hookscope/hookscope/bpf/handshake"
	"github.com/hookscope/hookscope/bpf/tcpstate"
)

// KernelDataPlane exists only on Linux; this stub keeps the agent building
// elsewhere (handshake.Load fails there first).
type KernelDataPlane struct{}

// NewKernelDataPlane is never reached off Linux.
func NewKernelDataPlane(*handshake.Tracer, *slog.Logger) *KernelDataPlane { return &KernelDataPlane{} }

// Run returns at once.
func (*KernelDataPlane) Run(context.Context) {}

// WithTCP does nothing.
func (k *KernelDataPlane) WithTCP(*tcpstate.Tracer) *KernelDataPlane { return k }

// TCPEvents delivers nothing.
func (*KernelDataPlane) TCPEvents() <-chan tcpstate.Event { return nil }

// Events delivers nothing.
func (*KernelDataPlane) Events() <-chan handshake.Event { return nil }

// SetBackends does nothing.
func (*KernelDataPlane) SetBackends([]netip.AddrPort) error { return nil }

// Traced is always false.
func (*KernelDataPlane) Traced(netip.AddrPort) bool { return false }

// EventsDropped is always zero.
func (*KernelDataPlane) EventsDropped() (uint64, error) { return 0, nil }

// Unparsed is always empty.
func (*KernelDataPlane) Unparsed() (map[string]uint64, error) { return nil, nil }
