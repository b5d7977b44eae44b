package agentcmd

import (
	"context"
	"log/slog"
	"os"

	"github.com/hookscope/hookscope/events"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube"
	"github.com/hookscope/hookscope/inventory"
)

// recordEvents makes the store's findings Kubernetes Events on the objects
// of the call-outs that fail, unless --record-events=false. Each agent
// records the findings it opened, with its node as the source host.
func recordEvents(ctx context.Context, o agentOptions, client kube.API, inv *inventory.Inventory, store *findings.Store, log *slog.Logger) {
	if !o.recordEvents {
		log.Info("not recording Events for findings (--record-events=false)")
		return
	}
	node := o.nodeName
	if node == "" {
		node, _ = os.Hostname()
	}
	store.AddSink(events.New(ctx, events.Config{Events: client, Node: node, UID: inv.UID, Log: log}))
}
