package risk

import (
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
)

// list joins up to limit names for a sentence ("a, b and c") and says how
// many more there are.
func list(names []string, limit int) string {
	switch {
	case len(names) > limit:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
	case len(names) > 1:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return strings.Join(names, "")
}

// describeRules is a short form of the rules for a sentence.
func describeRules(rs []admissionv1.RuleWithOperations) string {
	var parts []string
	for _, r := range rs {
		ops := make([]string, 0, len(r.Operations))
		for _, op := range r.Operations {
			ops = append(ops, string(op))
		}
		var res []string
		for _, g := range r.APIGroups {
			for _, x := range r.Resources {
				if g == "" {
					res = append(res, x)
				} else {
					res = append(res, x+"."+g)
				}
			}
		}
		parts = append(parts, strings.Join(ops, ",")+" "+list(res, 4))
	}
	return list(parts, 3)
}
