//go:build linux

package bench

// The scale bench's other call-outs: CRDs (some converting through a
// webhook) and APIServices, created as JSON through the clientset's REST
// client (no apiextensions or aggregator clientsets), as chaos/conversion.go
// and chaos/apiservice.go create theirs. Their webhooks' Services are
// backends as the inventory webhooks' (createBackend): endpoints in the
// guarded, unreachable 10.0.0.0/16 on nodes no measured agent runs on. No
// custom resource is created, so no conversion is ever called; the API
// server's availability check dials each APIService's endpoint, which
// fails at once on the unreachable route.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/internal/podnet"
)

const (
	crdsPath        = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
	apiServicesPath = "/apis/apiregistration.k8s.io/v1/apiservices"
	// callOutGroup is the suffix of every call-out's API group.
	callOutGroup = "scale.hookscope.dev"
	// crdProperties is how many described properties each CRD version's
	// spec schema has: about 7 KB of JSON, as an operator's CRD.
	crdProperties = 40
	// Backend slots (backendAddr) of the conversion webhooks' and the
	// APIServices' Services: above the inventory webhooks' (below 250).
	conversionSlot = 1000
	apiServiceSlot = 1250
	// steadyWatches is how long the API server's WATCH count must hold
	// still before agents are measured: the controller manager's garbage
	// collector and quota controllers rediscover resources every 30 s and
	// start a watch for each new one, which would count as the agent's.
	steadyWatches = 40 * time.Second
)

func crdGroup(i int) string          { return fmt.Sprintf("c%03d.%s", i, callOutGroup) }
func crdName(i int) string           { return "widgets." + crdGroup(i) }
func apiServiceGroup(i int) string   { return fmt.Sprintf("a%03d.%s", i, callOutGroup) }
func apiServiceName(i int) string    { return "v1alpha1." + apiServiceGroup(i) }
func conversionBackend(i int) string { return fmt.Sprintf("conv-%03d", i) }
func apiServiceBackend(i int) string { return fmt.Sprintf("api-%03d", i) }

// setCallOuts creates the CRDs, conversion webhooks and APIServices of step
// the cluster does not hold yet, with their backends, and returns how many
// objects it created. Call-outs are never removed: the cluster's deletion
// removes them.
func (s *scaleRig) setCallOuts(ctx context.Context, step ScaleStep) int {
	t := s.t
	if step.CRDs == s.crds && step.Conversions == s.conversions && step.APIServices == s.apiServices {
		return 0
	}
	if step.CRDs < s.crds || step.Conversions < s.conversions || step.APIServices < s.apiServices {
		t.Fatalf("step %+v has fewer call-outs than the cluster: the bench only adds them", step)
	}
	var addrs []netip.Addr
	for i := range step.Conversions {
		addrs = append(addrs, backendAddr(conversionSlot+i))
	}
	for i := range step.APIServices {
		addrs = append(addrs, backendAddr(apiServiceSlot+i))
	}
	if err := guardedUnreachable(addrs); err != nil {
		t.Fatal(err)
	}
	err := parallel(ctx, s.conversions, step.Conversions, func(ctx context.Context, i int) error {
		return s.createBackend(ctx, conversionBackend(i), conversionSlot+i, step.Nodes)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = parallel(ctx, s.crds, step.CRDs, func(ctx context.Context, i int) error {
		return s.postJSON(ctx, crdsPath, crdObject(i, i < step.Conversions), "creating CRD "+crdName(i))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = parallel(ctx, s.apiServices, step.APIServices, func(ctx context.Context, i int) error {
		if err := s.createBackend(ctx, apiServiceBackend(i), apiServiceSlot+i, step.Nodes); err != nil {
			return err
		}
		return s.postJSON(ctx, apiServicesPath, apiServiceObject(i), "creating APIService "+apiServiceName(i))
	})
	if err != nil {
		t.Fatal(err)
	}
	created := 2*(step.Conversions-s.conversions) + (step.CRDs - s.crds) + 3*(step.APIServices-s.apiServices)
	s.crds, s.conversions, s.apiServices = step.CRDs, step.Conversions, step.APIServices
	return created
}

// guardedUnreachable checks that nothing sent to addrs can leave the
// machine: the guard's unreachable route for podnet.GuardPrefix is there
// (podnet.Guard installs it if not), and no more specific route takes any
// of addrs (the kernel answers "No route to host" for each).
func guardedUnreachable(addrs []netip.Addr) error {
	if err := podnet.Guard(); err != nil {
		return fmt.Errorf("guarding the call-outs' endpoints: %w", err)
	}
	guard := podnet.GuardPrefix.String()
	out, err := exec.Command("ip", "-4", "route", "show", "exact", guard).CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "unreachable") {
		return fmt.Errorf("route %s is %q (%v), not unreachable: the API server's calls to the call-outs' endpoints could leave the machine", guard, out, err)
	}
	for _, a := range addrs {
		if !podnet.GuardPrefix.Contains(a) {
			return fmt.Errorf("endpoint %s is outside the guarded %s", a, guard)
		}
		out, err := exec.Command("ip", "-4", "route", "get", a.String()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "No route to host") {
			return fmt.Errorf("endpoint %s routes (%s): a route more specific than the guard's takes it", a, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// postJSON creates obj at path; one that exists already is no error.
func (s *scaleRig) postJSON(ctx context.Context, path string, obj any, what string) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.client.Discovery().RESTClient().Post().AbsPath(path).SetHeader("Content-Type", "application/json").
		Body(body).Do(ctx).Error()
	return ignoreExists(err, what)
}

// crdObject is CRD i: one version (v1), or with conversion two (v1 stored,
// v2) converted by a webhook at its own backend. Each version carries the
// full schema, as the API server sends it to every CRD watcher.
func crdObject(i int, conversion bool) map[string]any {
	schema := map[string]any{"openAPIV3Schema": crdSchema()}
	versions := []any{map[string]any{"name": "v1", "served": true, "storage": true, "schema": schema}}
	spec := map[string]any{
		"group": crdGroup(i), "scope": "Namespaced",
		"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
	}
	if conversion {
		versions = append(versions, map[string]any{"name": "v2", "served": true, "storage": false, "schema": schema})
		spec["conversion"] = map[string]any{"strategy": "Webhook", "webhook": map[string]any{
			"conversionReviewVersions": []string{"v1"},
			"clientConfig": map[string]any{"service": map[string]any{
				"namespace": invNamespace, "name": conversionBackend(i), "path": "/convert", "port": 443}},
		}}
	}
	spec["versions"] = versions
	return map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": crdName(i)}, "spec": spec,
	}
}

// crdSchema is a CRD version's schema of a realistic size: a spec of
// crdProperties described properties of every kind, and a status with
// conditions.
func crdSchema() map[string]any {
	props := map[string]any{}
	for j := range crdProperties {
		desc := fmt.Sprintf("field%02d is a setting the controller reconciles the workload towards; a change rolls it out.", j)
		p := map[string]any{"description": desc}
		switch j % 5 {
		case 0:
			p["type"] = "string"
		case 1:
			p["type"], p["format"], p["minimum"] = "integer", "int32", 0
		case 2:
			p["type"] = "boolean"
		case 3:
			p["type"], p["items"] = "array", map[string]any{"type": "string"}
		case 4:
			p["type"], p["additionalProperties"] = "object", map[string]any{"type": "string"}
		}
		props[fmt.Sprintf("field%02d", j)] = p
	}
	condition := map[string]any{"type": "object", "required": []string{"type", "status"}, "properties": map[string]any{
		"type":               map[string]any{"type": "string", "description": "Type of the condition, e.g. Ready."},
		"status":             map[string]any{"type": "string", "enum": []string{"True", "False", "Unknown"}},
		"reason":             map[string]any{"type": "string", "description": "Reason in CamelCase for the last transition."},
		"message":            map[string]any{"type": "string", "description": "Message for humans about the last transition."},
		"lastTransitionTime": map[string]any{"type": "string", "format": "date-time"},
	}}
	return map[string]any{"type": "object", "description": "Widget is a workload a controller runs on the cluster's nodes.",
		"properties": map[string]any{
			"spec": map[string]any{"type": "object", "description": "Spec is the widget's desired state.", "properties": props},
			"status": map[string]any{"type": "object", "description": "Status is the widget's observed state.", "properties": map[string]any{
				"observedGeneration": map[string]any{"type": "integer", "format": "int64"},
				"conditions":         map[string]any{"type": "array", "items": condition},
			}},
		}}
}

// apiServiceObject is APIService i, served by its own backend.
func apiServiceObject(i int) map[string]any {
	return map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": apiServiceName(i)},
		"spec": map[string]any{
			"group": apiServiceGroup(i), "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
			"service":               map[string]any{"namespace": invNamespace, "name": apiServiceBackend(i), "port": 443},
			"insecureSkipTLSVerify": true,
		},
	}
}

// callOutList is what waitCallOuts reads of a CRD or APIService list.
type callOutList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

// getList reads the list at path as JSON.
func (s *scaleRig) getList(ctx context.Context, path string) (callOutList, error) {
	var l callOutList
	raw, err := s.client.Discovery().RESTClient().Get().AbsPath(path).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return l, fmt.Errorf("listing %s: %w", path, err)
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return l, fmt.Errorf("listing %s: %w", path, err)
	}
	return l, nil
}

// countItems is how many objects the list at path holds.
func (s *scaleRig) countItems(ctx context.Context, path string) (int, error) {
	l, err := s.getList(ctx, path)
	return len(l.Items), err
}

// waitCallOuts waits until every CRD the bench made is Established, every
// APIService it made has its Available condition (False: its endpoint is
// unreachable) and the API server's WATCH count has held still for
// steadyWatches. (The aggregator also registers a local APIService for
// each CRD version: those are not waited for.)
func (s *scaleRig) waitCallOuts(ctx context.Context, timeout time.Duration) error {
	var (
		last        string
		watches     = -1.0
		steadySince time.Time
	)
	ours := map[string]bool{}
	for i := range s.crds {
		ours[crdName(i)] = true
	}
	for i := range s.apiServices {
		ours[apiServiceName(i)] = true
	}
	count := func(l callOutList, cond, status string) (n int) {
		for _, it := range l.Items {
			if !ours[it.Metadata.Name] {
				continue
			}
			for _, c := range it.Status.Conditions {
				if c.Type == cond && (status == "" || c.Status == status) {
					n++
				}
			}
		}
		return n
	}
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		crds, err1 := s.getList(ctx, crdsPath)
		apis, err2 := s.getList(ctx, apiServicesPath)
		w, err3 := s.apiserverWatches(ctx)
		if err1 != nil || err2 != nil || err3 != nil {
			last = fmt.Sprint(err1, err2, err3)
			return false, nil
		}
		if w != watches {
			watches, steadySince = w, time.Now()
		}
		established, checked := count(crds, "Established", "True"), count(apis, "Available", "")
		last = fmt.Sprintf("%d/%d CRDs Established, %d/%d APIServices checked, %.0f API server watches steady for %s",
			established, s.crds, checked, s.apiServices, watches, time.Since(steadySince).Round(time.Second))
		return established >= s.crds && checked >= s.apiServices && time.Since(steadySince) >= steadyWatches, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	s.t.Logf("call-outs settled: %s", last)
	return nil
}

func TestCallOutObjects(t *testing.T) {
	plain, err := json.Marshal(crdObject(7, false))
	if err != nil {
		t.Fatal(err)
	}
	conv, err := json.Marshal(crdObject(3, true))
	if err != nil {
		t.Fatal(err)
	}
	// A realistic CRD: a few KB of schema per version.
	if len(plain) < 4<<10 || len(plain) > 16<<10 || len(conv) < 2*len(plain)-1024 {
		t.Errorf("CRD sizes %d and %d bytes (conversion); want a few KB per version", len(plain), len(conv))
	}
	var crd struct {
		Metadata struct{ Name string } `json:"metadata"`
		Spec     struct {
			Group    string `json:"group"`
			Versions []struct {
				Name    string `json:"name"`
				Storage bool   `json:"storage"`
				Schema  struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Spec struct {
								Properties map[string]struct {
									Description string `json:"description"`
								} `json:"properties"`
							} `json:"spec"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
			Conversion struct {
				Strategy string `json:"strategy"`
				Webhook  struct {
					ClientConfig struct {
						Service struct{ Namespace, Name string } `json:"service"`
					} `json:"clientConfig"`
				} `json:"webhook"`
			} `json:"conversion"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(conv, &crd); err != nil {
		t.Fatal(err)
	}
	v := crd.Spec.Versions
	if crd.Metadata.Name != "widgets.c003.scale.hookscope.dev" || len(v) != 2 || v[0].Name != "v1" || !v[0].Storage || v[1].Name != "v2" || v[1].Storage {
		t.Errorf("conversion CRD %s has versions %+v; want v1 stored and v2", crd.Metadata.Name, v)
	}
	if props := v[1].Schema.OpenAPIV3Schema.Properties.Spec.Properties; len(props) != crdProperties || props["field00"].Description == "" {
		t.Errorf("v2's spec has %d properties; want %d, each described", len(props), crdProperties)
	}
	if c := crd.Spec.Conversion; c.Strategy != "Webhook" || c.Webhook.ClientConfig.Service.Name != "conv-003" || c.Webhook.ClientConfig.Service.Namespace != invNamespace {
		t.Errorf("conversion %+v; want a webhook at %s/conv-003", c, invNamespace)
	}
	if !strings.Contains(string(plain), `"name":"v1"`) || strings.Contains(string(plain), "conversion") || strings.Contains(string(plain), `"v2"`) {
		t.Errorf("a plain CRD has one version and no conversion: %.200s", plain)
	}
	api, err := json.Marshal(apiServiceObject(4))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"name":"v1alpha1.a004.scale.hookscope.dev"`, `"group":"a004.scale.hookscope.dev"`, `"version":"v1alpha1"`,
		`"insecureSkipTLSVerify":true`, `"groupPriorityMinimum":1000`, `"versionPriority":15`, `"name":"api-004"`} {
		if !strings.Contains(string(api), want) {
			t.Errorf("APIService lacks %s: %s", want, api)
		}
	}
	// Every backend address is in the guarded range, distinct from the
	// inventory webhooks' (slots below 250).
	seen := map[netip.Addr]bool{}
	for _, slot := range []int{0, 199, conversionSlot, conversionSlot + 19, apiServiceSlot, apiServiceSlot + 29} {
		a := backendAddr(slot)
		if !podnet.GuardPrefix.Contains(a) || seen[a] {
			t.Errorf("slot %d: %s outside %s or taken", slot, a, podnet.GuardPrefix)
		}
		seen[a] = true
	}
	t.Logf("CRD %d bytes, with conversion %d bytes", len(plain), len(conv))
}
