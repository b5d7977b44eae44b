package handshake

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unsafe"

	"github.com/hookscope/hookscope/bpf/internal/ringread"
)

// EventKind says what the program saw; the values come from enum event_kind
// in handshake.bpf.c.
type EventKind = handshakeEventKind

// The event kinds, as handshake.bpf.c defines them.
const (
	KindConnect           = handshakeEventKindEVENT_CONNECT
	KindReset             = handshakeEventKindEVENT_RESET
	KindClose             = handshakeEventKindEVENT_CLOSE
	KindClientHello       = handshakeEventKindEVENT_CLIENT_HELLO
	KindServerHello       = handshakeEventKindEVENT_SERVER_HELLO
	KindAlert             = handshakeEventKindEVENT_ALERT
	KindHandshakeRejected = handshakeEventKindEVENT_HANDSHAKE_REJECTED
	KindHandshakeDone     = handshakeEventKindEVENT_HANDSHAKE_DONE
	KindRefused           = handshakeEventKindEVENT_REFUSED
	// KindRequest: the client sent a request (an application-data record
	// large enough to be one) with none outstanding.
	KindRequest = handshakeEventKindEVENT_REQUEST
	// KindResponse: the server answered the outstanding request; Latency
	// is the webhook's own time to answer, as the wire shows it.
	KindResponse = handshakeEventKindEVENT_RESPONSE
)

// String names the kind the way spans and logs show it.
func (k handshakeEventKind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindReset:
		return "reset"
	case KindClose:
		return "close"
	case KindClientHello:
		return "client_hello"
	case KindServerHello:
		return "server_hello"
	case KindAlert:
		return "alert"
	case KindHandshakeRejected:
		return "handshake_rejected"
	case KindHandshakeDone:
		return "handshake_done"
	case KindRefused:
		return "refused"
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Phase is where the connection's handshake stood before the packet that
// caused an event (enum phase in handshake.bpf.c).
type Phase = handshakePhase

// The handshake phases, as handshake.bpf.c defines them.
const (
	PhaseTCP          = handshakePhasePHASE_TCP
	PhaseClientHello  = handshakePhasePHASE_CLIENT_HELLO
	PhaseServerFlight = handshakePhasePHASE_SERVER_FLIGHT
	PhaseDone         = handshakePhasePHASE_DONE
	PhaseRejected     = handshakePhasePHASE_REJECTED
)

// Event is one decoded record of the ring buffer.
type Event struct {
	raw handshakeEvent

	Kind   EventKind
	Time   time.Time // when the program saw the packet (wall clock)
	Client netip.AddrPort
	Server netip.AddrPort
	// FlowStart is when the client's SYN was seen; zero if it was not.
	FlowStart  time.Time
	FromServer bool  // the packet went from the backend to the client
	Phase      Phase // handshake phase before this packet
	TLS13      bool  // the server chose a TLS 1.3 cipher suite
	TLSVersion uint16
	Cipher     uint16
	// AlertLevel and AlertDescription hold a cleartext alert (TLS 1.2).
	AlertLevel       uint8
	AlertDescription uint8
	// EncryptedAlert: the client's record had the size of an encrypted alert.
	EncryptedAlert bool
	TCPFlags       uint8
	// Latency is, for a response, the time since its request; for a close
	// or reset, the time the request still outstanding had waited (0 if
	// none): a client that gives up after timeoutSeconds is a timeout.
	Latency time.Duration
	// Hello is what a ClientHello or ServerHello event's copied bytes say
	// (SNI, ALPN, versions); nil for other events, and when HelloErr says
	// why the bytes were not a hello.
	Hello    *Hello
	HelloErr error
}

// EventSize is the size of struct event in bytes.
var EventSize = binary.Size(handshakeEvent{})

// helloDataOffset is where a hello event's copied bytes start (struct
// hello_event), and helloMax how many it holds at most.
var (
	helloDataOffset = int(unsafe.Offsetof(handshakeHelloEvent{}.Data))
	helloMax        = len(handshakeHelloEvent{}.Data)
)

// DecodeEvent decodes one ring buffer record. Time and FlowStart stay zero:
// only the tracer knows the clock the kernel used.
func DecodeEvent(raw []byte) (Event, error) {
	if len(raw) < EventSize {
		return Event{}, fmt.Errorf("decoding handshake event: %d bytes, want %d", len(raw), EventSize)
	}
	var r handshakeEvent
	ringread.Into(raw, &r) // raw holds EventSize bytes, checked above
	k := EventKind(r.Kind)
	if k < KindConnect || k > KindRequest {
		return Event{}, fmt.Errorf("decoding handshake event: unknown kind %d", r.Kind)
	}
	if Phase(r.Phase) > PhaseRejected {
		return Event{}, fmt.Errorf("decoding handshake event: unknown phase %d", r.Phase)
	}
	e := Event{
		raw:              r,
		Kind:             k,
		Client:           netip.AddrPortFrom(netip.AddrFrom16(r.ClientAddr).Unmap(), r.ClientPort),
		Server:           netip.AddrPortFrom(netip.AddrFrom16(r.ServerAddr).Unmap(), r.ServerPort),
		FromServer:       r.FromServer != 0,
		Phase:            Phase(r.Phase),
		TLS13:            r.Tls13 != 0,
		TLSVersion:       r.TlsVersion,
		Cipher:           r.Cipher,
		AlertLevel:       r.AlertLevel,
		AlertDescription: r.AlertDesc,
		EncryptedAlert:   r.EncryptedAlert != 0,
		TCPFlags:         r.TcpFlags,
		Latency:          time.Duration(min(r.LatencyNs, uint64(math.MaxInt64))),
	}
	if k == KindClientHello || k == KindServerHello {
		e.Hello, e.HelloErr = decodeHello(raw, k)
	}
	return e, nil
}

// decodeHello reads the copied bytes that follow a hello event.
func decodeHello(raw []byte, k EventKind) (*Hello, error) {
	if len(raw) < helloDataOffset {
		return nil, fmt.Errorf("hello event of %d bytes carries no hello (want at least %d)", len(raw), helloDataOffset)
	}
	n := int(binary.NativeEndian.Uint16(raw[EventSize:]))
	if n > helloMax || helloDataOffset+n > len(raw) {
		return nil, fmt.Errorf("hello event says %d bytes follow, %d do", n, len(raw)-helloDataOffset)
	}
	if n == 0 {
		// Not copied: the client's hello to this backend was copied within
		// the minute, and says the same.
		return nil, nil
	}
	data := raw[helloDataOffset : helloDataOffset+n]
	parse := ParseClientHello
	if k == KindServerHello {
		parse = ParseServerHello
	}
	h, err := parse(data)
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// Counters are the program's own counts, summed over CPUs.
type Counters struct {
	Packets          uint64 // segments of traced connections with payload, SYN, FIN or RST (bare ACKs are not read)
	EventsDropped    uint64 // events lost because the ring buffer was full
	MalformedRecords uint64 // TLS record headers that were not
	SplitRecords     uint64 // record headers split across segments, or too many records in one
	OutOfOrder       uint64 // segments after a gap; record parsing stopped for that direction
	Unparsed         uint64 // IP fragments and IPv6 extension headers
	HeadersPulled    uint64 // packets whose headers were in paged data, pulled in to be read
	// Connects counts clients' SYNs to a backend. The kernel sends no event
	// for them: the events that follow carry the connection's start.
	Connects uint64
}
