package handshake

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookscope/hookscope/internal/certs"
)

// recordingConn keeps what the server side of a pipe reads (the client's
// bytes) and writes (its own).
type recordingConn struct {
	net.Conn
	mu      sync.Mutex
	in, out bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// realHellos runs a crypto/tls handshake over a pipe and returns the
// ClientHello and the ServerHello as handshake messages (the bytes the
// kernel copies: the first record's body). Test traffic stays on loopback.
func realHellos(t testing.TB, client *tls.Config, maxVersion uint16) (clientHello, serverHello []byte) {
	t.Helper()
	ca, err := certs.NewCA("hello-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Serving([]string{client.ServerName}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Loopback TCP, not net.Pipe: a pipe blocks the server's session
	// ticket until the client reads it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{Conn: s}
	srv := tls.Server(rec, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: maxVersion, NextProtos: []string{"h2", "http/1.1"}})
	client = client.Clone()
	client.RootCAs = ca.Pool()
	cli := tls.Client(c, client)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	cli.Close()
	srv.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return firstRecordBody(t, rec.in.Bytes()), firstRecordBody(t, rec.out.Bytes())
}

func firstRecordBody(t testing.TB, b []byte) []byte {
	t.Helper()
	if len(b) < 5 || b[0] != 22 {
		t.Fatalf("not a handshake record: % x", b[:min(len(b), 8)])
	}
	n := int(b[3])<<8 | int(b[4])
	return slices.Clone(b[5 : 5+n])
}

func TestParseRealHellos(t *testing.T) {
	cases := []struct {
		name        string
		client      *tls.Config
		maxVersion  uint16
		wantOffered []uint16
		wantChosen  uint16
		serverALPN  []string // cleartext only in TLS 1.2
	}{
		{"TLS 1.3, as the API server", &tls.Config{ServerName: "webhook.default.svc", NextProtos: []string{"h2", "http/1.1"}}, 0,
			[]uint16{tls.VersionTLS13, tls.VersionTLS12}, tls.VersionTLS13, nil},
		{"TLS 1.2 server", &tls.Config{ServerName: "webhook.default.svc", NextProtos: []string{"h2", "http/1.1"}}, tls.VersionTLS12,
			[]uint16{tls.VersionTLS13, tls.VersionTLS12}, tls.VersionTLS12, []string{"h2"}},
		{"TLS 1.2 client", &tls.Config{ServerName: "webhook.default.svc", NextProtos: []string{"http/1.1"}, MaxVersion: tls.VersionTLS12}, 0,
			[]uint16{tls.VersionTLS12}, tls.VersionTLS12, []string{"http/1.1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chBytes, shBytes := realHellos(t, c.client, c.maxVersion)
			ch, err := ParseClientHello(chBytes)
			if err != nil {
				t.Fatalf("ClientHello: %v", err)
			}
			if ch.ServerName != "webhook.default.svc" || !slices.Equal(ch.ALPN, c.client.NextProtos) || ch.Truncated {
				t.Errorf("ClientHello %+v", ch)
			}
			if c.client.MaxVersion == tls.VersionTLS12 {
				// No supported_versions: the legacy version says it.
				if !slices.Equal(ch.Versions, c.wantOffered) {
					t.Errorf("offered %v, want %v", ch.Versions, c.wantOffered)
				}
			} else if !slices.Equal(ch.Versions, c.wantOffered) {
				t.Errorf("offered %v, want %v", ch.Versions, c.wantOffered)
			}
			sh, err := ParseServerHello(shBytes)
			if err != nil {
				t.Fatalf("ServerHello: %v", err)
			}
			if !slices.Equal(sh.Versions, []uint16{c.wantChosen}) || sh.Cipher == 0 || !slices.Equal(sh.ALPN, c.serverALPN) || sh.Truncated {
				t.Errorf("ServerHello %+v, want version %s, a cipher, ALPN %v", sh, VersionName(c.wantChosen), c.serverALPN)
			}

			// Every cut of the copy keeps what came before it and never errs.
			for cut := 4; cut < len(chBytes); cut++ {
				h, err := ParseClientHello(chBytes[:cut])
				if err != nil {
					t.Fatalf("ClientHello cut at %d: %v", cut, err)
				}
				if !h.Truncated {
					t.Fatalf("ClientHello cut at %d of %d not marked truncated", cut, len(chBytes))
				}
				if h.ServerName != "" && h.ServerName != ch.ServerName {
					t.Fatalf("cut at %d: SNI %q", cut, h.ServerName)
				}
			}
		})
	}
}

func TestParseHelloRejectsWhatIsNotOne(t *testing.T) {
	chBytes, shBytes := realHellos(t, &tls.Config{ServerName: "webhook.default.svc"}, 0)
	cases := []struct {
		name  string
		parse func([]byte) (Hello, error)
		in    []byte
		want  string
	}{
		{"empty", ParseClientHello, nil, "want at least a 4-byte handshake header"},
		{"a ServerHello as a ClientHello", ParseClientHello, shBytes, "handshake type 2, want 1"},
		{"a ClientHello as a ServerHello", ParseServerHello, chBytes, "handshake type 1, want 2"},
		{"an SNI extension too short for its list", ParseClientHello, badExtension(0, []byte{0x00, 0x09, 0x00, 0x00, 0x01, 'a'}), "extension 0 is malformed"},
		{"odd supported_versions", ParseClientHello, badExtension(43, []byte{0x03, 0x03, 0x04, 0x03}), "extension 43 is malformed"},
		{"an extension past the block", ParseClientHello, badBlock(), "extension runs past the extensions block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.parse(c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// minimalClientHello builds a whole ClientHello with the given extensions block.
func minimalClientHello(exts []byte) []byte {
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...)    // random
	body = append(body, 0)                      // session id
	body = append(body, 0x00, 0x02, 0x13, 0x01) // one cipher suite
	body = append(body, 0x01, 0x00)             // null compression
	body = append(body, byte(len(exts)>>8), byte(len(exts)))
	body = append(body, exts...)
	return append([]byte{hsClientHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
}

func badExtension(typ uint16, data []byte) []byte {
	ext := []byte{byte(typ >> 8), byte(typ), byte(len(data) >> 8), byte(len(data))}
	return minimalClientHello(append(ext, data...))
}

func badBlock() []byte {
	// One extension that says 16 bytes follow; the block holds 2.
	return minimalClientHello([]byte{0x00, 0x10, 0x00, 0x10, 0xab, 0xcd})
}

// TestWriteHelloFuzzCorpus writes the real hellos into the fuzz corpus;
// run with HOOKSCOPE_WRITE_CORPUS=1 after changing what they look like.
func TestWriteHelloFuzzCorpus(t *testing.T) {
	if os.Getenv("HOOKSCOPE_WRITE_CORPUS") == "" {
		t.Skip("set HOOKSCOPE_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzParseHello")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseHello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, cfg := range []*tls.Config{
		{ServerName: "aws-load-balancer-webhook-service.kube-system.svc", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "webhook-service.system.svc", MaxVersion: tls.VersionTLS12},
	} {
		ch, sh := realHellos(t, cfg, 0)
		for j, b := range [][]byte{ch, sh, ch[:len(ch)/2], badBlock(), badExtension(16, []byte{0x00, 0x05, 0x09, 'h'})} {
			f := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-%d", i, j)), []byte(f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzParseHello: any bytes parse as either hello without panicking, with
// bounded output that is safe to log; a truncated result never also errs,
// and parsing is deterministic.
func FuzzParseHello(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (Hello, error){ParseClientHello, ParseServerHello} {
			h, err := parse(b)
			if err != nil && h.Truncated {
				t.Fatalf("error %v with a truncated result", err)
			}
			if len(h.ALPN) > maxHelloItems || len(h.Versions) > maxHelloItems || len(h.ServerName) > 255 {
				t.Fatalf("unbounded result %+v", h)
			}
			for _, s := range append([]string{h.ServerName}, h.ALPN...) {
				for _, c := range []byte(s) {
					if c < 0x20 || c > 0x7e {
						t.Fatalf("unprintable byte %#x in %q", c, s)
					}
				}
			}
			h2, err2 := parse(b)
			if fmt.Sprint(h, err) != fmt.Sprint(h2, err2) {
				t.Fatalf("not deterministic: %+v %v, then %+v %v", h, err, h2, err2)
			}
		}
	})
}
