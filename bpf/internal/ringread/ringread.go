//go:build linux

// Package ringread is what the tracers in bpf/ share: reading a ring buffer
// whose routine records do not wake the reader, and turning the kernel's
// bpf_ktime_get_ns() into wall time.
package ringread

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// PollInterval bounds how long a routine record (one submitted with
// BPF_RB_NO_WAKEUP) waits in the ring buffer: waking the reader on every
// record costs a self-IPI per packet (measured 9-10 us in a VM), so the
// programs wake it for failures only and the reader polls.
const PollInterval = 50 * time.Millisecond

// ErrClosed is Next's error once the reader is closed.
var ErrClosed = errors.New("ring buffer reader closed")

// Next returns the next record's bytes, polling every PollInterval.
func Next(r *ringbuf.Reader) ([]byte, error) {
	for {
		r.SetDeadline(time.Now().Add(PollInterval))
		rec, err := r.Read()
		switch {
		case err == nil:
			return rec.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // drained of the records that did not wake us
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("reading the events ring buffer: %w", err)
		}
	}
}

// Clock turns bpf_ktime_get_ns() values (CLOCK_MONOTONIC) into wall time.
type Clock struct {
	wallAtStart time.Time
	monoAtStart int64
}

// NewClock pairs the monotonic clock with the wall clock now.
func NewClock() Clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return Clock{wallAtStart: time.Now(), monoAtStart: ts.Nano()}
}

// Wall is the wall time of a bpf_ktime_get_ns() value.
func (c Clock) Wall(ns uint64) time.Time {
	return c.wallAtStart.Add(time.Duration(int64(ns) - c.monoAtStart))
}

// Into copies the first bytes of a ring buffer record into *dst, the event
// struct bpf2go generated from the C definition. That struct has the
// kernel's layout (bpf2go spells out the padding) and the record is in the
// machine's byte order, so a copy is the whole decoding: encoding/binary's
// reflection cost about 400 ns and two allocations per event, paid for
// every packet event of a traced backend. T must hold no pointers (bpf2go
// types hold none). It reports false when raw is too short.
func Into[T any](raw []byte, dst *T) bool {
	n := int(unsafe.Sizeof(*dst))
	if len(raw) < n {
		return false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(dst)), n), raw[:n])
	return true
}
