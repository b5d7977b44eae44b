// Package backendset keeps the two maps by which a hookscope BPF program
// knows a webhook backend: `backends`, a hash of (IP, port), and
// `backend_ports`, one bit per TCP port, the program's first and cheapest
// check. A port's bit stays set while any backend listens on it.
package backendset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
)

// Key is struct backend_key of the programs: the IP (IPv4 as
// ::ffff:a.b.c.d) and the port in network byte order.
type Key struct {
	Addr [16]uint8
	Port uint16
	Pad  uint16
}

// KeyOf is ap's key, as the programs write it.
func KeyOf(ap netip.AddrPort) Key {
	return Key{Addr: ap.Addr().As16(), Port: binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, ap.Port()))}
}

// Set adds and removes backends in both maps, keeping them consistent.
type Set struct {
	backends, ports *ebpf.Map

	mu      sync.Mutex
	members map[netip.AddrPort]struct{}
	perPort map[uint16]int // backends per port, behind its bit
}

// New manages backends (hash: Key -> u32) and ports (array of 1024 u64).
func New(backends, ports *ebpf.Map) *Set {
	return &Set{backends: backends, ports: ports, members: map[netip.AddrPort]struct{}{}, perPort: map[uint16]int{}}
}

// Add makes ap a backend; adding one twice is no error.
func (s *Set) Add(ap netip.AddrPort) error {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[ap]; ok {
		return nil
	}
	k := KeyOf(ap)
	if err := s.backends.Put(&k, uint32(1)); err != nil {
		return fmt.Errorf("adding backend %s to the BPF map: %w", ap, err)
	}
	if s.perPort[ap.Port()] == 0 {
		if err := s.setPortBit(ap.Port(), true); err != nil {
			_ = s.backends.Delete(&k)
			return fmt.Errorf("adding backend %s: marking its port: %w", ap, err)
		}
	}
	s.perPort[ap.Port()]++
	s.members[ap] = struct{}{}
	return nil
}

// Remove makes ap no backend; an unknown ap is no error.
func (s *Set) Remove(ap netip.AddrPort) error {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[ap]; !ok {
		return nil
	}
	k := KeyOf(ap)
	if err := s.backends.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing backend %s from the BPF map: %w", ap, err)
	}
	delete(s.members, ap)
	if s.perPort[ap.Port()]--; s.perPort[ap.Port()] == 0 {
		delete(s.perPort, ap.Port())
		if err := s.setPortBit(ap.Port(), false); err != nil {
			return fmt.Errorf("removing backend %s: clearing its port: %w", ap, err)
		}
	}
	return nil
}

// setPortBit sets or clears port's bit in the ports bitmap.
func (s *Set) setPortBit(port uint16, on bool) error {
	word := uint32(port >> 6)
	var bits uint64
	if err := s.ports.Lookup(word, &bits); err != nil {
		return err
	}
	if on {
		bits |= 1 << (port & 63)
	} else {
		bits &^= 1 << (port & 63)
	}
	return s.ports.Put(word, bits)
}
