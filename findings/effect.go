package findings

import "github.com/hookscope/hookscope/callout"

// Effect is what the API server does with the writes a failing webhook
// matches.
type Effect string

// The effects.
const (
	WritesRejected Effect = "writes rejected"
	FailsOpen      Effect = "fails open"
	WritesSlowed   Effect = "writes slowed"
	// NoneYet: nothing fails yet (a certificate about to expire).
	NoneYet Effect = "none yet"
	// NextConnectionFails: the API server still writes over a connection
	// it opened before the failure; its next new connection will fail.
	NextConnectionFails Effect = "writes pass on open connections; the next new connection will fail"
	// NoEffect is a webhook with nothing open (the health metric's label).
	NoEffect Effect = "none"
	// APIUnavailable: requests to an aggregated API fail, and so does the
	// discovery that namespace deletion and garbage collection need.
	APIUnavailable Effect = "requests to the API fail"
	// ConversionFails: reads and writes of a CRD's custom resources at a
	// version other than the stored one fail (there is no failurePolicy
	// for conversion), and with them garbage collection and namespace
	// deletion that touch them.
	ConversionFails Effect = "custom resources cannot be converted"
)

// EffectOf is the effect of a failure of class c of webhook w.
func EffectOf(w callout.Webhook, c Class) Effect {
	switch c {
	case Healthy:
		return NoEffect
	case CertExpiringSoon:
		return NoneYet
	case SlowResponse:
		return WritesSlowed
	case PatchDoesNotApply:
		return WritesRejected // whatever the failurePolicy: the API server rejects the patch, not the call
	}
	if w.IsAPIService() {
		return APIUnavailable
	}
	if w.IsConversion() {
		return ConversionFails
	}
	if w.FailurePolicy == "" || w.FailsClosed() {
		return WritesRejected
	}
	return FailsOpen
}
