// Package mapscan deletes the entries of a BPF hash map that match a
// predicate, reading and deleting in batches where the kernel has them
// (BPF_MAP_LOOKUP_BATCH and BPF_MAP_DELETE_BATCH, Linux >= 5.6: a full
// 65,536-entry map in 16 reads) and one entry at a time where it does not.
// The programs keep writing the map meanwhile: an entry deleted by them
// between the read and the delete is skipped, one added after its bucket
// was read is not seen.
package mapscan

import (
	"errors"

	"github.com/cilium/ebpf"
)

// Batch is how many entries one read returns.
const Batch = 4096

// DeleteWhere deletes every entry of m for which match is true and returns
// how many it deleted. K and V are the map's key and value types.
func DeleteWhere[K, V any](m *ebpf.Map, match func(*K, *V) bool) (int, error) {
	var stale []K
	keep := func(k *K, v *V) {
		if match(k, v) {
			stale = append(stale, *k)
		}
	}
	if err := each(m, keep); err != nil {
		return 0, err
	}
	return len(stale), Delete(m, stale)
}

// Each calls fn with every entry of m, read batch entries at a time where
// the kernel has batches: a map read often wants a small batch (its
// buffers are allocated per call).
func Each[K, V any](m *ebpf.Map, batch int, fn func(*K, *V)) error {
	return eachBatch(m, max(batch, 1), fn)
}

// each calls fn with every entry of m.
func each[K, V any](m *ebpf.Map, fn func(*K, *V)) error { return eachBatch(m, Batch, fn) }

func eachBatch[K, V any](m *ebpf.Map, batch int, fn func(*K, *V)) error {
	keys, values := make([]K, batch), make([]V, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, values, nil)
		for i := range n {
			fn(&keys[i], &values[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil // the end
		case errors.Is(err, ebpf.ErrNotSupported):
			var (
				k K
				v V
			)
			it := m.Iterate()
			for it.Next(&k, &v) {
				fn(&k, &v)
			}
			return it.Err()
		case err != nil:
			return err
		}
	}
}

// Delete deletes keys from m; a key already gone is skipped.
func Delete[K any](m *ebpf.Map, keys []K) error {
	for len(keys) > 0 {
		n, err := m.BatchDelete(keys, nil)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist): // keys[n] is gone
			n++
		case errors.Is(err, ebpf.ErrNotSupported):
			for i := range keys {
				if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
			}
			return nil
		case err != nil:
			return err
		}
		keys = keys[min(n, len(keys)):]
	}
	return nil
}
