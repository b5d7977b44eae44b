package risk

import (
	"fmt"

	"github.com/hookscope/hookscope/callout"
)

// calloutName names a resolved call-out as an operator knows it: the
// admission webhook and its failurePolicy, the aggregated API, or the CRD
// whose conversion webhook it is.
func calloutName(w callout.Webhook) string {
	switch {
	case w.IsAPIService() && w.API != "":
		return fmt.Sprintf("aggregated API %s (APIService %s)", w.API, w.Ref.Name)
	case w.IsAPIService():
		return "aggregated API of APIService " + w.Ref.Name
	case w.IsConversion():
		return "the conversion webhook of CRD " + w.Ref.Name
	}
	return fmt.Sprintf("webhook %s (failurePolicy %s)", w.Ref, failurePolicy(w))
}

// whenUncallable is what breaks while no call to w succeeds.
func whenUncallable(w callout.Webhook) string {
	switch {
	case w.IsAPIService():
		return "requests to the API and its discovery fail, and namespaces cannot finish deleting"
	case w.IsConversion():
		return "reads and writes of its custom resources that need converting between versions fail"
	case w.FailsClosed():
		return "every write it matches is rejected"
	}
	return "every write it matches passes unchecked"
}
