package findings

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Source is where a piece of evidence comes from.
type Source string

// The sources.
const (
	// Kernel: the data plane saw it on the wire.
	Kernel Source = "ebpf"
	// Probe: a probe called the backend as the API server does.
	Probe Source = "probe"
	// Objects: the API server's objects (the configuration, the Service,
	// its endpoints and pods).
	Objects Source = "apiserver"
	// Event: a Warning Event the API server holds.
	Event Source = "apiserver-event"
	// Metrics: the API server's admission webhook counters.
	Metrics Source = "apiserver-metrics"
	// Agent: hookscope itself (a restart, a hand-over).
	Agent Source = "hookscope"
)

// Evidence is one observation behind a finding. Detail is the sentence an
// operator reads; the typed fields carry the same facts for exporters.
type Evidence struct {
	Source Source    `json:"source"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail"`
	// Wire is what the kernel saw of the call (kernel evidence only).
	Wire *WireFacts `json:"wire,omitempty"`
	// Calls is how many calls the API server reported (signals only).
	Calls int `json:"calls,omitempty"`
}

// Phase is how far a TLS handshake got before it ended.
type Phase string

// The handshake phases the data plane tells apart.
const (
	PhaseConnect     Phase = "connect"
	PhaseClientHello Phase = "client_hello"
	PhaseServerHello Phase = "server_hello"
	PhaseDone        Phase = "done"
)

// WireFacts are what the kernel saw of one failed or slow call.
type WireFacts struct {
	Client netip.AddrPort `json:"client"`
	// Phase is where the handshake stopped.
	Phase Phase `json:"phase,omitempty"`
	// TLSVersion is the negotiated version, "1.2" or "1.3", once the
	// server's hello was seen.
	TLSVersion string `json:"tlsVersion,omitempty"`
	// Alert is the cleartext alert the client sent (TLS 1.2), if any.
	Alert *TLSAlert `json:"alert,omitempty"`
	// EncryptedAlert: in TLS 1.3 the client's record after the server's
	// first flight had the size of an encrypted alert.
	EncryptedAlert bool `json:"encryptedAlert,omitempty"`
	// Latency is how long the request waited for its answer (or had
	// waited when the client gave up).
	Latency time.Duration `json:"latency,omitempty"`
}

// TLSAlert is a TLS alert (RFC 8446 section 6).
type TLSAlert struct {
	Level       uint8 `json:"level"`
	Description uint8 `json:"description"`
}

// LevelName is "warning" or "fatal".
func (a TLSAlert) LevelName() string {
	switch a.Level {
	case 1:
		return "warning"
	case 2:
		return "fatal"
	}
	return "level(" + strconv.Itoa(int(a.Level)) + ")"
}

// DescriptionName names the alert, e.g. "bad_certificate".
func (a TLSAlert) DescriptionName() string {
	if n, ok := alertNames[a.Description]; ok {
		return n
	}
	return "alert(" + strconv.Itoa(int(a.Description)) + ")"
}

func (a TLSAlert) String() string {
	return fmt.Sprintf("%s alert %s (%d)", a.LevelName(), a.DescriptionName(), a.Description)
}

var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
	40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
	44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
	47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
	51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
	86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
	110: "unsupported_extension", 112: "unrecognized_name", 113: "bad_certificate_status_response",
	115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}

// same reports whether two pieces of evidence say the same thing (an
// Event updated with a new count, the same probe result again).
func (e Evidence) same(o Evidence) bool { return e.Source == o.Source && e.Detail == o.Detail }
