//go:build !linux

package tcpstate

import "errors"

// Tracer is the kernel tracer; it exists only on Linux.
type Tracer struct{}

// Load fails off Linux: the tcpstate programs need the Linux kernel.
func Load() (*Tracer, error) {
	return nil, errors.New("loading tcpstate programs: eBPF needs Linux")
}
