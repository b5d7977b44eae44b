//go:build linux

// Package ringread is what the tracers in bpf/ share: reading a ring buffer
// whose routine records do not wake the reader, and turning the kernel's
// bpf_ktime_get_ns() into wall time.
package ringread

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// PollInterval bounds how long a routine record waits in the ring buffer.
// Waking the reader on every record costs a self-IPI per packet (measured
// 9-10 us in a VM), so the programs wake it for failures, and for a
// routine record only when none woke it for PollInterval
// (bpf/include/wake.h, WAKE_EVERY_NS). The records after such a wake-up
// that do not wake it are found by polling: Reader polls every
// PollInterval while records come, and blocks with no deadline once none
// came for quietAfter, so an idle node's reader sleeps until the next
// record wakes it.
const PollInterval = 50 * time.Millisecond

// quietAfter is how long after its last record the reader keeps polling.
// Any record that did not wake it was submitted within PollInterval of one
// that did, which the reader read; two empty polls after that are past it.
const quietAfter = 2 * PollInterval

// ErrClosed is Next's error once the reader is closed.
var ErrClosed = errors.New("ring buffer reader closed")

// Reader reads records from a ring buffer the programs wake as wake.h says.
// Not safe for concurrent use.
type Reader struct {
	r        *ringbuf.Reader
	rec      ringbuf.Record
	lastRead time.Time
	polls    atomic.Uint64
}

// NewReader reads r. It polls for quietAfter first: records may be there
// already.
func NewReader(r *ringbuf.Reader) *Reader {
	return &Reader{r: r, lastRead: time.Now()}
}

// Next returns the next record's bytes, valid until the next call.
func (rd *Reader) Next() ([]byte, error) {
	for {
		now := time.Now()
		if now.Sub(rd.lastRead) < quietAfter {
			rd.r.SetDeadline(now.Add(PollInterval))
		} else {
			rd.r.SetDeadline(time.Time{}) // until a record wakes it
		}
		err := rd.r.ReadInto(&rd.rec)
		rd.polls.Add(1)
		switch {
		case err == nil:
			rd.lastRead = time.Now()
			return rd.rec.RawSample, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // drained of the records that did not wake us
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return nil, ErrClosed
		default:
			return nil, fmt.Errorf("reading the events ring buffer: %w", err)
		}
	}
}

// Polls counts the reader's returns from the ring buffer: one per record
// and one per poll that found none. An idle reader adds none.
func (rd *Reader) Polls() uint64 { return rd.polls.Load() }

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
