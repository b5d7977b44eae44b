// Package backendset keeps the maps by which a hookscope BPF program knows a
// webhook backend (bpf/include/backends.h): `backends`, a hash of (IP,
// port); `backend_ports`, one bit per TCP port; and `port_summary`, 512
// bits in one cache line, bit port&511 for every port with a backend, the
// programs' first check. A bit stays set while any backend needs it.
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

// SummaryBits is the number of bits in the port summary (struct
// port_summary): a port's bit there is port % SummaryBits.
const SummaryBits = 512

// Set adds and removes backends in the maps, keeping them consistent.
type Set struct {
	backends, ports, summary *ebpf.Map

	mu      sync.Mutex
	members map[netip.AddrPort]struct{}
	perPort map[uint16]int // backends per port, behind its bits
}

// New manages backends (hash: Key -> u32), ports (array of 1024 u64) and
// summary (array of one [8]u64).
func New(backends, ports, summary *ebpf.Map) *Set {
	return &Set{
		backends: backends, ports: ports, summary: summary,
		members: map[netip.AddrPort]struct{}{}, perPort: map[uint16]int{},
	}
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
		if err := s.markPort(ap.Port()); err != nil {
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
		if err := s.unmarkPort(ap.Port()); err != nil {
			return fmt.Errorf("removing backend %s: clearing its port: %w", ap, err)
		}
	}
	return nil
}

// markPort sets port's bits: the summary's first, so that a program never
// finds a port in the bitmap that its summary does not let through.
func (s *Set) markPort(port uint16) error {
	if err := s.setSummaryBit(port%SummaryBits, true); err != nil {
		return err
	}
	return setBit(s.ports, uint32(port>>6), port&63, true)
}

// unmarkPort clears port's bit (port has left perPort), and its summary bit
// once no other port with a backend shares it.
func (s *Set) unmarkPort(port uint16) error {
	if err := setBit(s.ports, uint32(port>>6), port&63, false); err != nil {
		return err
	}
	for p := range s.perPort {
		if p%SummaryBits == port%SummaryBits {
			return nil
		}
	}
	return s.setSummaryBit(port%SummaryBits, false)
}

func (s *Set) setSummaryBit(bit uint16, on bool) error {
	var words [SummaryBits / 64]uint64
	if err := s.summary.Lookup(uint32(0), &words); err != nil {
		return err
	}
	if on {
		words[bit>>6] |= 1 << (bit & 63)
	} else {
		words[bit>>6] &^= 1 << (bit & 63)
	}
	return s.summary.Put(uint32(0), words)
}

// setBit sets or clears bit of word in an array of u64.
func setBit(m *ebpf.Map, word uint32, bit uint16, on bool) error {
	var bits uint64
	if err := m.Lookup(word, &bits); err != nil {
		return err
	}
	if on {
		bits |= 1 << bit
	} else {
		bits &^= 1 << bit
	}
	return m.Put(word, bits)
}
