package backendset

import (
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestPortBitFollowsItsBackends: a port's bit stays set while any backend
// listens on it, and both maps agree after adds and removes (real maps).
func TestPortBitFollowsItsBackends(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating BPF maps needs root")
	}
	backends, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 20, ValueSize: 4, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer backends.Close()
	ports, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 65536 / 64})
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	s := New(backends, ports)
	a := netip.MustParseAddrPort("10.0.0.1:8443")
	b := netip.MustParseAddrPort("[::ffff:10.0.0.2]:8443") // the same family once unmapped
	bitSet := func() bool {
		var bits uint64
		if err := ports.Lookup(uint32(8443>>6), &bits); err != nil {
			t.Fatal(err)
		}
		return bits&(1<<(8443&63)) != 0
	}
	isBackend := func(ap netip.AddrPort) bool {
		var v uint32
		k := KeyOf(ap)
		return backends.Lookup(&k, &v) == nil
	}
	for _, ap := range []netip.AddrPort{a, b, a} { // adding twice is no error
		if err := s.Add(ap); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(a); err != nil {
		t.Fatal(err)
	}
	if !bitSet() || isBackend(a) || !isBackend(b) {
		t.Fatalf("after removing one of two: bit %v, a %v, b %v; want the bit kept, only b", bitSet(), isBackend(a), isBackend(b))
	}
	if err := s.Remove(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(b); err != nil { // an unknown one is no error
		t.Fatal(err)
	}
	if bitSet() || isBackend(b) {
		t.Fatalf("after removing both: bit %v, b %v; want neither", bitSet(), isBackend(b))
	}
}
