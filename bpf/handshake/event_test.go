package handshake

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/hookscope/hookscope/bpf/internal/layoutcheck"
)

func encode(t testing.TB, e handshakeEvent) []byte {
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, e); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecodeEvent(t *testing.T) {
	raw := handshakeEvent{Kind: uint8(KindHandshakeRejected), Phase: uint8(PhaseServerFlight), Tls13: 1, EncryptedAlert: 1,
		ClientPort: 40000, ServerPort: 8443, Cipher: 0x1301}
	raw.ClientAddr = netip.MustParseAddr("192.0.2.2").As16()
	raw.ServerAddr = netip.MustParseAddr("fd00::7").As16()
	e, err := DecodeEvent(encode(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if e.Client != netip.MustParseAddrPort("192.0.2.2:40000") || e.Server != netip.MustParseAddrPort("[fd00::7]:8443") {
		t.Errorf("addresses %s %s", e.Client, e.Server)
	}
	if e.Kind != KindHandshakeRejected || !e.TLS13 || !e.EncryptedAlert || e.Cipher != 0x1301 {
		t.Errorf("decoded %+v", e)
	}

	for name, bad := range map[string][]byte{
		"short":         encode(t, raw)[:EventSize-1],
		"unknown kind":  encode(t, handshakeEvent{Kind: 200}),
		"zero kind":     encode(t, handshakeEvent{}),
		"unknown phase": encode(t, handshakeEvent{Kind: uint8(KindConnect), Phase: 9}),
	} {
		if _, err := DecodeEvent(bad); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// FuzzDecodeEvent: any bytes either decode into an event with a known kind
// and phase, or give an error; never a panic.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(encode(f, handshakeEvent{Kind: uint8(KindServerHello), Tls13: 1, Cipher: 0x1302}))
	f.Add(encode(f, handshakeEvent{Kind: uint8(KindRefused), FromServer: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		if e.Kind < KindConnect || e.Kind > KindRequest || e.Phase > PhaseRejected {
			t.Fatalf("accepted kind %d phase %d", e.Kind, e.Phase)
		}
		if !e.Client.IsValid() || !e.Server.IsValid() {
			t.Fatalf("invalid addresses %v %v", e.Client, e.Server)
		}
	})
}

// TestEventLayout: the generated struct has no padding Go adds on its own,
// so copying a record into it (ringread.Into) is decoding it.
func TestEventLayout(t *testing.T) {
	spec, err := loadHandshake()
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range layoutcheck.Struct(spec, "event", handshakeEvent{}) {
		t.Error(err)
	}
	if got := int(unsafe.Sizeof(handshakeEvent{})); got != EventSize {
		t.Errorf("EventSize is %d, the struct %d", EventSize, got)
	}
}
