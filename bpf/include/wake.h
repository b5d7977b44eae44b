// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// wake.h: when a record wakes the ring buffer's reader. Waking it costs a
// self-IPI per record (about 9 us measured in a VM), so routine records do
// not; but a reader that polls to find them wakes 20 times a second on a
// node with no traffic at all. Instead the program wakes the reader for a
// failure at once, and for a routine record when no record woke it for
// WAKE_EVERY_NS: the first record after a quiet spell wakes it, and the
// records that follow within WAKE_EVERY_NS are read by the reader's own
// polls, which it keeps up only while records come
// (bpf/internal/ringread). A quiet node wakes its reader never; a busy
// one at most 1 s / WAKE_EVERY_NS times a second, plus its failures.
// Include after <bpf/bpf_helpers.h>.

#ifndef HOOKSCOPE_WAKE_H
#define HOOKSCOPE_WAKE_H

// WAKE_EVERY_NS is ringread.PollInterval: the reader polls at that pace
// for twice as long after its last record, so a record that did not wake
// it is read within WAKE_EVERY_NS.
#define WAKE_EVERY_NS (50ULL * 1000 * 1000)

// When the last record that woke the reader was submitted
// (bpf_ktime_get_ns). Two CPUs may both wake it: harmless.
volatile __u64 last_wake_ns = 0;

// wake_flags returns the flags for bpf_ringbuf_submit/output of a record
// submitted at now: 0 (wake the reader if it has read everything before
// this record) for a failure and for the first record in WAKE_EVERY_NS,
// BPF_RB_NO_WAKEUP for the others. 0 is enough: a reader that has records
// left to read is not asleep for good (it keeps polling for twice
// WAKE_EVERY_NS after its last record), and one that is asleep has read
// everything, so 0 wakes it.
static __always_inline __u64 wake_flags(int failure, __u64 now)
{
	if (!failure && now - last_wake_ns < WAKE_EVERY_NS)
		return BPF_RB_NO_WAKEUP;
	last_wake_ns = now;
	return 0;
}

#endif
