package pace

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestSleepsUntilWoken: a check with nothing to do stops the ticks; Wake
// starts them again, and they go on while the check has more to do.
func TestSleepsUntilWoken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls, work atomic.Int64
	checked := make(chan struct{}, 100)
	tk := New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk.Run(ctx, time.Millisecond, func(time.Time) bool {
			calls.Add(1)
			checked <- struct{}{}
			return work.Add(-1) > 0
		})
	}()
	<-checked // the first check finds nothing to do
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d checks with nothing to do, want 1: Run did not sleep", n)
	}

	work.Store(3) // three checks' worth
	tk.Wake()
	for range 3 {
		<-checked
	}
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d checks after Wake with three to do, want 4 in all", n)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended while asleep")
	}
}

// TestWakeWhileTickingIsKept: a Wake that comes while the check runs (the
// work it announces came after the check looked) is not lost.
func TestWakeWhileTickingIsKept(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tk := New()
	var calls atomic.Int64
	second := make(chan struct{})
	go tk.Run(ctx, time.Millisecond, func(time.Time) bool {
		switch calls.Add(1) {
		case 1:
			tk.Wake() // work arrives after this check looked
			return false
		case 2:
			close(second)
		}
		return false
	})
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("a Wake during the check was lost: no second check")
	}
}

// TestWakeNeverBlocks: many Wakes with no Run do not block.
func TestWakeNeverBlocks(t *testing.T) {
	tk := New()
	for range 1000 {
		tk.Wake()
	}
}
