package tcpstate

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/hookscope/hookscope/bpf/internal/ringread"
)

// EventKind says what the program saw; the values come from enum event_kind
// in tcpstate.bpf.c.
type EventKind = tcpstateEventKind

// The event kinds, as tcpstate.bpf.c defines them.
const (
	// KindSYN: a connection starts. Client side: connect() sent the SYN
	// (the client port is not bound yet and reads 0). Server side: the
	// backend's socket is created, when the client's final ACK arrives.
	KindSYN = tcpstateEventKindEVENT_SYN
	// KindEstablished: the handshake completed on this socket.
	KindEstablished = tcpstateEventKindEVENT_ESTABLISHED
	// KindRefused: a RST answered the SYN. Client side: the client's socket
	// received it; server side: the backend's node sent it (no listener).
	KindRefused = tcpstateEventKindEVENT_REFUSED
	// KindResetReceived: the socket received a RST after its SYN was answered.
	KindResetReceived = tcpstateEventKindEVENT_RESET_RECEIVED
	// KindResetSent: the socket's side sent a RST (abort, SO_LINGER 0, a
	// segment for a closed connection). The kernel closes an aborted socket
	// before it sends the RST, so this event follows that socket's close.
	KindResetSent = tcpstateEventKindEVENT_RESET_SENT
	// KindRetransmit: the connection's 1st, 2nd, 4th, 8th... retransmission
	// (tail loss probes included); Retransmits has the count.
	KindRetransmit = tcpstateEventKindEVENT_RETRANSMIT
	// KindClose: the socket reached TCP_CLOSE; Duration, Retransmits and
	// ClosedBy sum the connection up.
	KindClose = tcpstateEventKindEVENT_CLOSE
)

// String names the kind the way spans and logs show it.
func (k tcpstateEventKind) String() string {
	switch k {
	case KindSYN:
		return "syn"
	case KindEstablished:
		return "established"
	case KindRefused:
		return "refused"
	case KindResetReceived:
		return "reset_received"
	case KindResetSent:
		return "reset_sent"
	case KindRetransmit:
		return "retransmit"
	case KindClose:
		return "close"
	}
	return fmt.Sprintf("kind(%d)", uint32(k))
}

// Side is one end of a webhook call: the caller (the API server) or the
// backend (the webhook pod). Events say whose socket saw them, and close
// events who closed first.
type Side = tcpstateSide

// The sides, as tcpstate.bpf.c defines them.
const (
	SideUnknown = tcpstateSideSIDE_UNKNOWN
	SideClient  = tcpstateSideSIDE_CLIENT
	SideServer  = tcpstateSideSIDE_SERVER
)

// String names the side.
func (s tcpstateSide) String() string {
	switch s {
	case SideUnknown:
		return "unknown"
	case SideClient:
		return "client"
	case SideServer:
		return "server"
	}
	return fmt.Sprintf("side(%d)", uint32(s))
}

// TCPState is a socket's TCP state, numbered as the kernel numbers them.
type TCPState = tcpstateTcpState

// The TCP states tests and callers compare against.
const (
	StateEstablished = tcpstateTcpStateTCP_ESTABLISHED
	StateSynSent     = tcpstateTcpStateTCP_SYN_SENT
	StateSynRecv     = tcpstateTcpStateTCP_SYN_RECV
	StateFinWait1    = tcpstateTcpStateTCP_FIN_WAIT1
	StateFinWait2    = tcpstateTcpStateTCP_FIN_WAIT2
	StateTimeWait    = tcpstateTcpStateTCP_TIME_WAIT
	StateClose       = tcpstateTcpStateTCP_CLOSE
	StateCloseWait   = tcpstateTcpStateTCP_CLOSE_WAIT
	StateLastAck     = tcpstateTcpStateTCP_LAST_ACK
	StateListen      = tcpstateTcpStateTCP_LISTEN
	StateClosing     = tcpstateTcpStateTCP_CLOSING
	StateNewSynRecv  = tcpstateTcpStateTCP_NEW_SYN_RECV
)

var stateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// String names the state as ss(8) and the kernel's tracepoint do.
func (s tcpstateTcpState) String() string {
	if s >= StateEstablished && s <= StateNewSynRecv {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Event is one decoded record of the ring buffer.
type Event struct {
	raw tcpstateEvent

	Kind EventKind
	Side Side      // whose socket saw it
	Time time.Time // when the program saw it (wall clock)
	// Start is when the connection started on this socket (see KindSYN);
	// zero if it started before it was traced.
	Start time.Time
	// Duration is Time - Start, measured on the kernel's monotonic clock;
	// zero if Start is unknown.
	Duration time.Duration
	Cookie   uint64 // the socket's cookie (SO_COOKIE); 0 when no socket was involved
	Client   netip.AddrPort
	Server   netip.AddrPort
	// OldState and NewState: for syn, established and close the state
	// change; for the others both hold the socket's state at the time.
	OldState, NewState TCPState
	ClosedBy           Side   // who closed (FIN or RST) first, if known yet
	Retransmits        uint32 // retransmissions on this socket so far
	Established        bool   // the connection got established
	ResetReceived      bool
	ResetSent          bool
	// ResetReasonCode is the kernel's enum sk_rst_reason of a reset sent;
	// ResetReason its name in this kernel (set by the tracer, e.g. NO_SOCKET).
	ResetReasonCode uint32
	ResetReason     string
}

// EventSize is the size of struct event in bytes.
var EventSize = binary.Size(tcpstateEvent{})

// DecodeEvent decodes one ring buffer record. Time and Start stay zero: only
// the tracer knows the clock the kernel used.
func DecodeEvent(raw []byte) (Event, error) {
	if len(raw) < EventSize {
		return Event{}, fmt.Errorf("decoding tcpstate event: %d bytes, want %d", len(raw), EventSize)
	}
	var r tcpstateEvent
	ringread.Into(raw, &r) // raw holds EventSize bytes, checked above
	k := EventKind(r.Kind)
	if k < KindSYN || k > KindClose {
		return Event{}, fmt.Errorf("decoding tcpstate event: unknown kind %d", r.Kind)
	}
	if s := Side(r.Side); s != SideClient && s != SideServer {
		return Event{}, fmt.Errorf("decoding tcpstate event: unknown side %d", r.Side)
	}
	if Side(r.ClosedBy) > SideServer {
		return Event{}, fmt.Errorf("decoding tcpstate event: unknown closing side %d", r.ClosedBy)
	}
	for _, s := range []uint8{r.OldState, r.NewState} {
		if TCPState(s) < StateEstablished || TCPState(s) > StateNewSynRecv {
			return Event{}, fmt.Errorf("decoding tcpstate event: unknown TCP state %d", s)
		}
	}
	if r.StartNs > r.TsNs || r.TsNs-r.StartNs > math.MaxInt64 {
		return Event{}, fmt.Errorf("decoding tcpstate event: start %d does not fit its time %d", r.StartNs, r.TsNs)
	}
	e := Event{
		raw:             r,
		Kind:            k,
		Side:            Side(r.Side),
		Cookie:          r.Cookie,
		Client:          netip.AddrPortFrom(netip.AddrFrom16(r.ClientAddr).Unmap(), r.ClientPort),
		Server:          netip.AddrPortFrom(netip.AddrFrom16(r.ServerAddr).Unmap(), r.ServerPort),
		OldState:        TCPState(r.OldState),
		NewState:        TCPState(r.NewState),
		ClosedBy:        Side(r.ClosedBy),
		Retransmits:     r.Retransmits,
		Established:     r.Flags&uint8(tcpstateConnFlagFLAG_ESTABLISHED) != 0,
		ResetReceived:   r.Flags&uint8(tcpstateConnFlagFLAG_RESET_RECEIVED) != 0,
		ResetSent:       r.Flags&uint8(tcpstateConnFlagFLAG_RESET_SENT) != 0,
		ResetReasonCode: r.ResetReason,
	}
	if r.StartNs != 0 {
		e.Duration = time.Duration(r.TsNs - r.StartNs)
	}
	return e, nil
}

// Counters are the programs' own counts, summed over CPUs.
type Counters struct {
	EventsDropped uint64 // events lost because the ring buffer was full
	// Matched counts, per program name, the runs that passed the backend
	// check (runs for other traffic are counted nowhere).
	Matched map[string]uint64
	// ClosedWithoutState counts traced sockets that closed with no state:
	// they started before tracing, or their state was evicted.
	ClosedWithoutState uint64
	// SYNs and Established count the traced connections' starts and
	// completed handshakes, per socket (a connection whose both ends are
	// on the node counts twice): the kernel counts them and sends no
	// record (LoadWithTransitions sends them too).
	SYNs, Established uint64
}
