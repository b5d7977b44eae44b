package mapscan

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

func newMap(t *testing.T, typ ebpf.MapType, entries uint32) *ebpf.Map {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating BPF maps needs root")
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: 8, MaxEntries: entries})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestDeleteWhere: across several batches, exactly the matching entries
// go, in a hash and in an LRU hash (real maps).
func TestDeleteWhere(t *testing.T) {
	for _, typ := range []ebpf.MapType{ebpf.Hash, ebpf.LRUHash} {
		t.Run(typ.String(), func(t *testing.T) {
			const n = 3*Batch + 17
			m := newMap(t, typ, 2*n) // an LRU map evicts before it is full
			want := 0
			for k := uint32(0); k < n; k++ {
				if err := m.Put(k, uint64(k%3)); err != nil {
					t.Fatal(err)
				}
				if k%3 == 1 {
					want++
				}
			}
			deleted, err := DeleteWhere(m, func(_ *uint32, v *uint64) bool { return *v == 1 })
			if err != nil {
				t.Fatal(err)
			}
			if deleted != want {
				t.Errorf("deleted %d, want %d", deleted, want)
			}
			var v uint64
			for k := uint32(0); k < n; k++ {
				err := m.Lookup(k, &v)
				if gone := err != nil; gone != (k%3 == 1) {
					t.Fatalf("key %d: gone %v (%v)", k, gone, err)
				}
			}
		})
	}
}

// TestDeleteSkipsTheGone: a key deleted meanwhile (its connection closed
// between the read and the delete) stops no batch: the keys after it go
// too.
func TestDeleteSkipsTheGone(t *testing.T) {
	m := newMap(t, ebpf.Hash, 16)
	keys := []uint32{1, 2, 3, 4, 5}
	for _, k := range keys {
		if k != 2 && k != 5 { // 2 and 5 are gone
			if err := m.Put(k, uint64(0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := Delete(m, keys); err != nil {
		t.Fatal(err)
	}
	var v uint64
	for _, k := range keys {
		if m.Lookup(k, &v) == nil {
			t.Errorf("key %d is left", k)
		}
	}
}
