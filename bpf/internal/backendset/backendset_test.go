package backendset

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// TestPortBitFollowsItsBackends: a port's bit stays set while any backend
// listens on it, its summary bit while any port with a backend shares it,
// and the maps agree after adds and removes (real maps).
func TestPortBitFollowsItsBackends(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating BPF maps needs root")
	}
	newMap := func(spec *ebpf.MapSpec) *ebpf.Map {
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	backends := newMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 20, ValueSize: 4, MaxEntries: 16})
	ports := newMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 65536 / 64})
	summary := newMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: SummaryBits / 8, MaxEntries: 1})
	s := New(backends, ports, summary)
	a := netip.MustParseAddrPort("10.0.0.1:8443")
	b := netip.MustParseAddrPort("[::ffff:10.0.0.2]:8443") // the same family once unmapped
	c := netip.MustParseAddrPort("10.0.0.3:8955")          // 8955 % 512 == 8443 % 512
	portBit := func(port uint16) bool {
		var bits uint64
		if err := ports.Lookup(uint32(port>>6), &bits); err != nil {
			t.Fatal(err)
		}
		return bits&(1<<(port&63)) != 0
	}
	summaryBit := func(port uint16) bool {
		var words [SummaryBits / 64]uint64
		if err := summary.Lookup(uint32(0), &words); err != nil {
			t.Fatal(err)
		}
		bit := port % SummaryBits
		return words[bit>>6]&(1<<(bit&63)) != 0
	}
	isBackend := func(ap netip.AddrPort) bool {
		var v uint32
		k := KeyOf(ap)
		return backends.Lookup(&k, &v) == nil
	}
	state := func() string {
		return fmt.Sprintf("port 8443 %v, port 8955 %v, summary %v, a %v, b %v, c %v",
			portBit(8443), portBit(8955), summaryBit(8443), isBackend(a), isBackend(b), isBackend(c))
	}
	for _, ap := range []netip.AddrPort{a, b, a, c} { // adding twice is no error
		if err := s.Add(ap); err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		remove netip.AddrPort
		want   string
	}{
		{a, "port 8443 true, port 8955 true, summary true, a false, b true, c true"},
		{b, "port 8443 false, port 8955 true, summary true, a false, b false, c true"},
		{b, "port 8443 false, port 8955 true, summary true, a false, b false, c true"}, // an unknown one is no error
		{c, "port 8443 false, port 8955 false, summary false, a false, b false, c false"},
	} {
		if err := s.Remove(step.remove); err != nil {
			t.Fatal(err)
		}
		if got := state(); got != step.want {
			t.Fatalf("after removing %s:\n got %s\nwant %s", step.remove, got, step.want)
		}
	}
}
