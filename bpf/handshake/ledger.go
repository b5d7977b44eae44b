//go:build linux

package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hookscope/hookscope/bpf/internal/mapscan"
)

// LedgerEntry is what the SYN ledger holds for one backend and one client
// address: the SYNs that reached the backend's interface on this node and
// how the backend answered them.
type LedgerEntry struct {
	Server netip.AddrPort
	Client netip.Addr
	// Own: the SYNs are the agent's own probes' (their ports were marked
	// with MarkOwnPort before they connected).
	Own bool
	// SYNs counts client SYNs, retransmissions included; Answered the
	// server's SYN-ACKs; Refused its resets to a SYN.
	SYNs, Answered, Refused uint64
	// FirstSYN is zero when the entry began with untracked segments;
	// LastSYN is zero when no SYN came.
	FirstSYN, LastSYN time.Time
	// LastAnswer is the last SYN-ACK or refusal; zero if none.
	LastAnswer time.Time
	// Untracked counts the client's data segments on connections that
	// began before tracing (no SYN of theirs is in the ledger);
	// LastUntracked is the last one, zero if none.
	Untracked     uint64
	LastUntracked time.Time
}

// Ledger reads the SYN ledger.
func (t *Tracer) Ledger() ([]LedgerEntry, error) {
	var out []LedgerEntry
	// Read when a call fails, a few times a second at most; a node has a
	// few entries per backend: a small batch keeps each read's buffers
	// small (4,096 entries would be 400 KB).
	err := mapscan.Each(t.objs.SynLedger, 64, func(k *handshakeLedgerKey, v *handshakeLedgerEntry) {
		port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, k.ServerPort))
		e := LedgerEntry{
			Server: netip.AddrPortFrom(netip.AddrFrom16(k.ServerAddr).Unmap(), port),
			Client: netip.AddrFrom16(k.ClientAddr).Unmap(),
			Own:    k.Own != 0,
			SYNs:   v.Syns, Answered: v.Answered, Refused: v.Refused,
		}
		// An entry the client's segments on a connection from before
		// tracing opened has no first SYN (first_ns stays 0), while its
		// later SYNs set last_syn_ns: each time is read on its own. (Read
		// as one, the SYNs after an agent's restart had no time, and the
		// ledger said none arrived: the API server holds its connections
		// across the restart.)
		if v.FirstNs != 0 {
			e.FirstSYN = t.clock.Wall(v.FirstNs)
		}
		if v.LastSynNs != 0 {
			e.LastSYN = t.clock.Wall(v.LastSynNs)
		}
		if v.LastAnswerNs != 0 {
			e.LastAnswer = t.clock.Wall(v.LastAnswerNs)
		}
		if e.Untracked = v.Untracked; v.LastUntrackedNs != 0 {
			e.LastUntracked = t.clock.Wall(v.LastUntrackedNs)
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the SYN ledger: %w", err)
	}
	return out, nil
}

// MarkOwnPort says that connections from local port are the agent's own
// probes: their SYNs go to the ledger's own entries. Call it after binding
// the socket and before connecting.
func (t *Tracer) MarkOwnPort(port uint16) error {
	if err := t.objs.OwnPorts.Put(port, uint8(1)); err != nil {
		return fmt.Errorf("marking probe port %d: %w", port, err)
	}
	return nil
}

// UnmarkOwnPort forgets a probe's port; an unknown port is no error.
func (t *Tracer) UnmarkOwnPort(port uint16) error {
	if err := t.objs.OwnPorts.Delete(port); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forgetting probe port %d: %w", port, err)
	}
	return nil
}
