package tcpstate

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
	"unsafe"
)

func encode(t testing.TB, e tcpstateEvent) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, e); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func closeEvent() tcpstateEvent {
	raw := tcpstateEvent{
		TsNs: 5_000_000, StartNs: 2_000_000, Cookie: 77,
		ClientPort: 40000, ServerPort: 8443, Retransmits: 3,
		Kind: uint8(KindClose), Side: uint8(SideClient),
		OldState: uint8(StateFinWait2), NewState: uint8(StateClose), ClosedBy: uint8(SideServer),
		Flags: uint8(tcpstateConnFlagFLAG_ESTABLISHED | tcpstateConnFlagFLAG_RESET_RECEIVED),
	}
	raw.ClientAddr = netip.MustParseAddr("::ffff:192.0.2.2").As16()
	raw.ServerAddr = netip.MustParseAddr("fd77::2").As16()
	return raw
}

func TestDecodeEvent(t *testing.T) {
	e, err := DecodeEvent(encode(t, closeEvent()))
	if err != nil {
		t.Fatal(err)
	}
	if e.Client != netip.MustParseAddrPort("192.0.2.2:40000") || e.Server != netip.MustParseAddrPort("[fd77::2]:8443") {
		t.Errorf("addresses %s %s", e.Client, e.Server)
	}
	if e.Kind != KindClose || e.Side != SideClient || e.ClosedBy != SideServer || e.Duration != 3*time.Millisecond ||
		e.Retransmits != 3 || !e.Established || !e.ResetReceived || e.ResetSent || e.Cookie != 77 ||
		e.OldState != StateFinWait2 || e.NewState != StateClose {
		t.Errorf("decoded %+v", e)
	}
	if e.OldState.String() != "FIN_WAIT2" || e.Kind.String() != "close" || e.ClosedBy.String() != "server" {
		t.Errorf("names %s %s %s", e.OldState, e.Kind, e.ClosedBy)
	}

	bad := func(edit func(*tcpstateEvent)) []byte {
		r := closeEvent()
		edit(&r)
		return encode(t, r)
	}
	for name, b := range map[string][]byte{
		"short":             encode(t, closeEvent())[:EventSize-1],
		"zero":              encode(t, tcpstateEvent{}),
		"unknown kind":      bad(func(r *tcpstateEvent) { r.Kind = 200 }),
		"no side":           bad(func(r *tcpstateEvent) { r.Side = 0 }),
		"unknown side":      bad(func(r *tcpstateEvent) { r.Side = 3 }),
		"unknown closer":    bad(func(r *tcpstateEvent) { r.ClosedBy = 9 }),
		"unknown state":     bad(func(r *tcpstateEvent) { r.OldState = 13 }),
		"zero state":        bad(func(r *tcpstateEvent) { r.NewState = 0 }),
		"start after event": bad(func(r *tcpstateEvent) { r.StartNs = r.TsNs + 1 }),
	} {
		if _, err := DecodeEvent(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// FuzzDecodeEvent: any bytes either decode into an event with a known kind,
// side and states and a duration that is not negative, or give an error;
// never a panic.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(encode(f, closeEvent()))
	refused := closeEvent()
	refused.Kind, refused.Side, refused.Cookie, refused.ResetReason = uint8(KindRefused), uint8(SideServer), 0, 1
	f.Add(encode(f, refused))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		if e.Kind < KindSYN || e.Kind > KindClose || (e.Side != SideClient && e.Side != SideServer) || e.ClosedBy > SideServer {
			t.Fatalf("accepted kind %d side %d closed_by %d", e.Kind, e.Side, e.ClosedBy)
		}
		if e.OldState < StateEstablished || e.OldState > StateNewSynRecv || e.NewState < StateEstablished || e.NewState > StateNewSynRecv {
			t.Fatalf("accepted states %d %d", e.OldState, e.NewState)
		}
		if e.Duration < 0 || !e.Client.IsValid() || !e.Server.IsValid() {
			t.Fatalf("duration %v addresses %v %v", e.Duration, e.Client, e.Server)
		}
	})
}

// BenchmarkDecodeEvent: one ring buffer record into an Event, as the agent
// does for every TCP event of a traced backend.
func BenchmarkDecodeEvent(b *testing.B) {
	raw := encode(b, closeEvent())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEventLayout: the generated struct has no padding Go adds on its own,
// so copying a record into it (ringread.Into) is decoding it.
func TestEventLayout(t *testing.T) {
	if got := int(unsafe.Sizeof(tcpstateEvent{})); got != EventSize {
		t.Fatalf("Go lays struct event out in %d bytes, the kernel in %d", got, EventSize)
	}
}
