package agent

import (
	"github.com/hookscope/hookscope/apisignals"
	"github.com/hookscope/hookscope/impact"
)

// denialOf is what the correlation reads of a webhook's denial.
func denialOf(d apisignals.DeniedCreate) impact.Denial {
	return impact.Denial{Webhook: d.Webhook, Message: d.Message, At: d.At, Object: d.Object, Reason: d.Reason, Count: d.Count}
}
