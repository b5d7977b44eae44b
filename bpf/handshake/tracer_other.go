//go:build !linux

package handshake

import "errors"

// Tracer is the kernel tracer; it exists only on Linux.
type Tracer struct{}

// Load fails off Linux: the handshake programs need the Linux kernel.
func Load() (*Tracer, error) {
	return nil, errors.New("loading handshake programs: eBPF needs Linux")
}
