package handshake

import (
	"errors"
	"fmt"
)

// Hello is what a ClientHello or a ServerHello says about the connection,
// from the bytes the kernel copied (the handshake message's first KiB).
type Hello struct {
	// ServerName is the client's SNI: for a call from the API server,
	// <service>.<namespace>.svc.
	ServerName string
	// ALPN lists the protocols the client offers (h2, http/1.1), or the
	// one a TLS 1.2 server chose (TLS 1.3 servers send it encrypted).
	ALPN []string
	// Versions are the TLS versions the client offers (supported_versions,
	// else its legacy version), or the one the server chose.
	Versions []uint16
	// Cipher is the cipher suite the server chose; 0 in a ClientHello.
	Cipher uint16
	// Truncated: the message went on past what the kernel copied; what was
	// read up to there is kept.
	Truncated bool
}

// TLS handshake message types and extensions the parser reads (RFC 8446).
const (
	hsClientHello = 1
	hsServerHello = 2

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43

	// maxHelloItems bounds the names, protocols and versions kept from one
	// hello: a hostile one must not cost more than a real one.
	maxHelloItems = 16
)

// errTruncated is the reader running out of copied bytes.
var errTruncated = errors.New("truncated")

// helloReader reads big-endian fields from b, never past its end.
type helloReader struct{ b []byte }

func (r *helloReader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b) {
		return nil, errTruncated
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out, nil
}

func (r *helloReader) uint(n int) (int, error) {
	b, err := r.bytes(n)
	if err != nil {
		return 0, err
	}
	v := 0
	for _, c := range b {
		v = v<<8 | int(c)
	}
	return v, nil
}

// vector reads a length-prefixed vector whose length takes n bytes.
func (r *helloReader) vector(n int) ([]byte, error) {
	l, err := r.uint(n)
	if err != nil {
		return nil, err
	}
	return r.bytes(l)
}

// ParseClientHello reads a ClientHello handshake message, starting at its
// type byte, as far as b goes. An error means b is not a ClientHello or
// its lengths contradict each other; a message cut short by the copy is
// Truncated, with what came before the cut.
func ParseClientHello(b []byte) (Hello, error) {
	var h Hello
	r, err := helloBody(b, hsClientHello)
	if err != nil {
		return h, fmt.Errorf("parsing ClientHello: %w", err)
	}
	version, err := r.uint(2)
	if err == nil {
		h.Versions = []uint16{uint16(version)}
		_, err = r.bytes(32) // random
	}
	if err == nil {
		_, err = r.vector(1) // legacy_session_id
	}
	if err == nil {
		_, err = r.vector(2) // cipher_suites
	}
	if err == nil {
		_, err = r.vector(1) // legacy_compression_methods
	}
	if err == nil {
		err = extensions(r, &h, true)
	}
	return finish(h, err, "ClientHello")
}

// ParseServerHello reads a ServerHello handshake message, as
// ParseClientHello does a ClientHello.
func ParseServerHello(b []byte) (Hello, error) {
	var h Hello
	r, err := helloBody(b, hsServerHello)
	if err != nil {
		return h, fmt.Errorf("parsing ServerHello: %w", err)
	}
	version, err := r.uint(2)
	if err == nil {
		h.Versions = []uint16{uint16(version)}
		_, err = r.bytes(32) // random
	}
	if err == nil {
		_, err = r.vector(1) // legacy_session_id_echo
	}
	var cipher int
	if err == nil {
		cipher, err = r.uint(2)
		h.Cipher = uint16(cipher)
	}
	if err == nil {
		_, err = r.bytes(1) // legacy_compression_method
	}
	if err == nil && len(r.b) > 0 { // TLS 1.2 servers may send no extensions
		err = extensions(r, &h, false)
	}
	return finish(h, err, "ServerHello")
}

// helloBody checks the message type and returns a reader over the body,
// bounded by the message's own length when the copy holds all of it.
func helloBody(b []byte, want byte) (*helloReader, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%d bytes, want at least a 4-byte handshake header", len(b))
	}
	if b[0] != want {
		return nil, fmt.Errorf("handshake type %d, want %d", b[0], want)
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	body := b[4:]
	if n < len(body) {
		body = body[:n] // another message follows in the record
	}
	return &helloReader{b: body}, nil
}

// extensions reads the extensions block into h.
func extensions(r *helloReader, h *Hello, client bool) error {
	total, err := r.uint(2)
	if err != nil {
		return err
	}
	copied := total <= len(r.b)
	if copied {
		r.b = r.b[:total]
	}
	for len(r.b) > 0 {
		typ, err := r.uint(2)
		var data []byte
		if err == nil {
			data, err = r.vector(2)
		}
		if err != nil {
			if copied {
				// The block was copied whole: an extension that runs past
				// its end is malformed, not cut short.
				return errors.New("extension runs past the extensions block")
			}
			return err
		}
		e := &helloReader{b: data}
		switch typ {
		case extServerName:
			if client {
				err = serverName(e, h)
			}
		case extALPN:
			err = alpn(e, h)
		case extSupportedVersions:
			err = supportedVersions(e, h, client)
		}
		if err != nil {
			return fmt.Errorf("extension %d is malformed", typ) // not errTruncated: it was copied whole
		}
	}
	if !copied {
		return errTruncated
	}
	return nil
}

func serverName(e *helloReader, h *Hello) error {
	list, err := e.vector(2)
	if err != nil {
		return err
	}
	l := &helloReader{b: list}
	for len(l.b) > 0 {
		typ, err := l.uint(1)
		if err != nil {
			return err
		}
		name, err := l.vector(2)
		if err != nil {
			return err
		}
		if typ == 0 && h.ServerName == "" { // host_name
			h.ServerName = printable(name)
		}
	}
	return nil
}

func alpn(e *helloReader, h *Hello) error {
	list, err := e.vector(2)
	if err != nil {
		return err
	}
	l := &helloReader{b: list}
	for len(l.b) > 0 {
		p, err := l.vector(1)
		if err != nil {
			return err
		}
		if len(h.ALPN) < maxHelloItems {
			h.ALPN = append(h.ALPN, printable(p))
		}
	}
	return nil
}

func supportedVersions(e *helloReader, h *Hello, client bool) error {
	if !client { // the server's choice
		v, err := e.uint(2)
		if err != nil {
			return err
		}
		h.Versions = []uint16{uint16(v)}
		return nil
	}
	list, err := e.vector(1)
	if err != nil {
		return err
	}
	if len(list)%2 != 0 {
		return errors.New("odd length")
	}
	var vs []uint16
	for i := 0; i+1 < len(list); i += 2 {
		v := uint16(list[i])<<8 | uint16(list[i+1])
		if v&0x0f0f == 0x0a0a { // GREASE (RFC 8701): not a version
			continue
		}
		if len(vs) < maxHelloItems {
			vs = append(vs, v)
		}
	}
	h.Versions = vs
	return nil
}

// finish turns running out of copied bytes into Truncated.
func finish(h Hello, err error, what string) (Hello, error) {
	switch {
	case err == nil:
		return h, nil
	case errors.Is(err, errTruncated):
		h.Truncated = true
		return h, nil
	}
	return h, fmt.Errorf("parsing %s: %w", what, err)
}

// printable keeps a name or protocol safe to log and to put in a span:
// bytes outside printable ASCII become '?', and it is at most 255 bytes.
func printable(b []byte) string {
	if len(b) > 255 {
		b = b[:255]
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// VersionName names a TLS version for spans and logs ("1.3").
func VersionName(v uint16) string {
	switch v {
	case 0x0304:
		return "1.3"
	case 0x0303:
		return "1.2"
	case 0x0302:
		return "1.1"
	case 0x0301:
		return "1.0"
	}
	return fmt.Sprintf("0x%04x", v)
}
