package inventory

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/callout"
)

// UID is the UID of the object that holds call-out ref (its webhook
// configuration, CustomResourceDefinition or APIService) as the informers
// hold it; ok is false when they hold none. The agent's Events name it, as
// kubectl describe looks for it.
func (inv *Inventory) UID(ref callout.Ref) (types.UID, bool) {
	var i cache.SharedIndexInformer
	switch ref.Kind {
	case callout.KindValidating:
		i = inv.vwc
	case callout.KindMutating:
		i = inv.mwc
	case callout.KindConversion:
		i = inv.crds
	case callout.KindAPIService:
		i = inv.apis
	}
	if i == nil {
		return "", false
	}
	o, ok, err := i.GetStore().GetByKey(ref.Configuration) // cluster-scoped: the key is the name
	if err != nil || !ok {
		return "", false
	}
	m, err := meta.Accessor(o)
	if err != nil || m.GetUID() == "" {
		return "", false
	}
	return m.GetUID(), true
}
