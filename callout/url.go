package callout

import "net/url"

// urlHost is the host of a webhook URL, without its port; empty when the
// URL does not parse.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
