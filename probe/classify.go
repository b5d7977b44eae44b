package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/hookscope/hookscope/findings"
)

// classifyVerify names an x509 verification error.
func classifyVerify(err error, now time.Time) findings.Class {
	if inv, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		if inv.Reason == x509.Expired {
			// x509 uses one reason for both ends of the window.
			if inv.Cert != nil && now.Before(inv.Cert.NotBefore) {
				return findings.CertNotYetValid
			}
			return findings.CertExpired
		}
		return findings.TLSHandshakeFailed
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return findings.UnknownAuthority
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return findings.HostnameMismatch
	}
	return findings.TLSHandshakeFailed
}

// classifyDial names a connect or handshake error.
func classifyDial(err error) findings.Class {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return findings.ConnectionRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), isNotFound(err):
		return findings.Unreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), dialTimeout(err):
		return findings.HandshakeTimeout
	}
	return findings.TLSHandshakeFailed
}

// isNotFound reports whether err is a name that does not resolve.
func isNotFound(err error) bool {
	dns, ok := errors.AsType[*net.DNSError](err)
	return ok && dns.IsNotFound
}

// classifyHandshake names an error of the TLS handshake, after the
// connection was made: something that does not speak TLS (a plain HTTP
// answer, a close without one: a sidecar or proxy), a reset, a timeout.
func classifyHandshake(err error) findings.Class {
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok || errors.Is(err, io.EOF) {
		return findings.NotTheWebhook
	}
	c := classifyDial(err)
	if c == findings.ConnectionRefused { // reset during the handshake
		return findings.TLSHandshakeFailed
	}
	return c
}
