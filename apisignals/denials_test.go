package apisignals

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// kyvernoMessage is the game day's policy message, worded as Kyverno words
// a denied pod (the pod has no name yet: the controller generates it).
const kyvernoMessage = "resource Pod/kube-system/ was blocked due to the following policies disallow-host-namespaces: host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`. rule host-namespaces failed at path /spec/hostNetwork/'"

type denialCase struct {
	name string
	msg  string
	want Denial
	ok   bool
}

// denialCases are the API server's texts (v1.34.4) of a webhook's denial,
// as the game day made it produce them: the client's error, the
// controllers' FailedCreate Events and the API server's log line; and
// texts that are not a denial.
var denialCases = []denialCase{
	{name: "client, a policy engine's message over several lines",
		msg:  "admission webhook \"vpod.explore.hookscope.dev\" denied the request: \n\nresource Pod/kube-system/ was blocked due to the following policies \n\ndisallow-host-namespaces:\n  host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`. rule host-namespaces failed at path /spec/hostNetwork/'\n",
		want: Denial{Webhook: "vpod.explore.hookscope.dev", Message: kyvernoMessage}, ok: true},
	{name: "client, without explanation",
		msg:  `admission webhook "vpod.explore.hookscope.dev" denied the request without explanation`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev"}, ok: true},
	{name: "client, a constraint's message",
		msg:  `admission webhook "vpod.explore.hookscope.dev" denied the request: [psp-host-network-ports] The specified hostNetwork and hostPort are not allowed, pod: . Allowed values: {"hostNetwork": false}`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev", Message: `[psp-host-network-ports] The specified hostNetwork and hostPort are not allowed, pod: . Allowed values: {"hostNetwork": false}`}, ok: true},
	{name: "event, a ReplicaSet's FailedCreate",
		msg:  "Error creating: admission webhook \"vpod.explore.hookscope.dev\" denied the request: \n\nresource Pod/kube-system/ was blocked due to the following policies \n\ndisallow-host-namespaces:\n  host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`. rule host-namespaces failed at path /spec/hostNetwork/'\n",
		want: Denial{Webhook: "vpod.explore.hookscope.dev", Message: kyvernoMessage}, ok: true},
	{name: "event, aws-node's DaemonSet on a joining node",
		msg:  "Error creating: admission webhook \"vpod.denies-aws-node.hookscope.dev\" denied the request: \n\nresource Pod/kube-system/ was blocked due to the following policies \n\ndisallow-host-namespaces:\n  host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`. rule host-namespaces failed at path /spec/hostNetwork/'\n",
		want: Denial{Webhook: "vpod.denies-aws-node.hookscope.dev", Message: kyvernoMessage}, ok: true},
	{name: "event, CoreDNS's ReplicaSet, without explanation",
		msg:  `Error creating: admission webhook "vpod.explore.hookscope.dev" denied the request without explanation`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev"}, ok: true},
	{name: "apiserver log, rejected by webhook",
		msg:  `W1206 05:08:19.064773   20584 dispatcher.go:225] rejected by webhook "vpod.explore.hookscope.dev": &errors.StatusError{ErrStatus:v1.Status{TypeMeta:v1.TypeMeta{Kind:"", APIVersion:""}, ListMeta:v1.ListMeta{SelfLink:"", ResourceVersion:"", Continue:"", RemainingItemCount:(*int64)(nil)}, Status:"Failure", Message:"admission webhook \"vpod.explore.hookscope.dev\" denied the request: [psp-host-network-ports] The specified hostNetwork and hostPort are not allowed, pod: . Allowed values: {\"hostNetwork\": false}", Reason:"", Details:(*v1.StatusDetails)(nil), Code:403}}`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev", Message: `[psp-host-network-ports] The specified hostNetwork and hostPort are not allowed, pod: . Allowed values: {"hostNetwork": false}`}, ok: true},
	{name: "apiserver log, a policy engine's message over several lines",
		msg:  `W1206 05:08:19.057293   20584 dispatcher.go:225] rejected by webhook "vpod.explore.hookscope.dev": &errors.StatusError{ErrStatus:v1.Status{TypeMeta:v1.TypeMeta{Kind:"", APIVersion:""}, ListMeta:v1.ListMeta{SelfLink:"", ResourceVersion:"", Continue:"", RemainingItemCount:(*int64)(nil)}, Status:"Failure", Message:"admission webhook \"vpod.explore.hookscope.dev\" denied the request: \n\nresource Pod/kube-system/ was blocked due to the following policies \n\ndisallow-host-namespaces:\n  host-namespaces: 'validation error: Sharing the host namespaces is disallowed. The fields spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to ` + "`false`" + `. rule host-namespaces failed at path /spec/hostNetwork/'\n", Reason:"", Details:(*v1.StatusDetails)(nil), Code:403}}`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev", Message: kyvernoMessage}, ok: true},
	{name: "apiserver log, without explanation",
		msg:  `W1206 05:08:19.142915   20584 dispatcher.go:225] rejected by webhook "vpod.explore.hookscope.dev": &errors.StatusError{ErrStatus:v1.Status{TypeMeta:v1.TypeMeta{Kind:"", APIVersion:""}, ListMeta:v1.ListMeta{SelfLink:"", ResourceVersion:"", Continue:"", RemainingItemCount:(*int64)(nil)}, Status:"Failure", Message:"admission webhook \"vpod.explore.hookscope.dev\" denied the request without explanation", Reason:"", Details:(*v1.StatusDetails)(nil), Code:400}}`,
		want: Denial{Webhook: "vpod.explore.hookscope.dev"}, ok: true},
	// Not denials.
	{name: "a failed call (unknown authority, an empty caBundle)",
		msg: `Internal error occurred: failed calling webhook "vpod.explore.hookscope.dev": failed to call webhook: Post "https://explore-webhook.chaos-explore.svc:443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate signed by unknown authority`},
	{name: "apiserver log, failing closed",
		msg: `W1206 05:08:26.224836   20584 dispatcher.go:217] Failed calling webhook, failing closed vpod.explore.hookscope.dev: failed calling webhook "vpod.explore.hookscope.dev": failed to call webhook: Post "https://explore-webhook.chaos-explore.svc:443/validate?timeout=5s": tls: failed to verify certificate: x509: certificate signed by unknown authority`},
	// Cut from the texts above: a broken or partial text is no denial.
	{name: "cut after the name", msg: `Error creating: admission webhook "vpod.explore.hookscope.dev"`},
	{name: "cut in the name", msg: `Error creating: admission webhook "vpod.explore.hook`},
	{name: "cut before the message", msg: `admission webhook "vpod.explore.hookscope.dev" denied the request`},
	{name: "empty name", msg: `admission webhook "" denied the request without explanation`},
	{name: "empty"},
}

func TestParseDenial(t *testing.T) {
	for _, c := range denialCases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ParseDenial(c.msg)
			if ok != c.ok || got != c.want {
				t.Fatalf("ParseDenial = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// TestParseDenialBounds: a message is folded and cut to maxDetail bytes on
// a rune boundary; a huge input is read only so far.
func TestParseDenialBounds(t *testing.T) {
	long := `Error creating: admission webhook "p.example.com" denied the request: ` + strings.Repeat("é\n ", maxDetail)
	got, ok := ParseDenial(long)
	if !ok || len(got.Message) > maxDetail || strings.ContainsAny(got.Message, "\n") || !strings.HasPrefix(got.Message, "é é") {
		t.Errorf("long message: ok=%v len=%d %q...", ok, len(got.Message), got.Message[:min(len(got.Message), 20)])
	}
	big := strings.Repeat(`admission webhook \"`, 1<<20)
	start := time.Now()
	for range 100 {
		ParseDenial(big)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("100 parses of a 20 MiB input took %s", d)
	}
}

func FuzzParseDenial(f *testing.F) {
	for _, c := range denialCases {
		f.Add(c.msg)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		got, ok := ParseDenial(msg)
		if !ok {
			if got != (Denial{}) {
				t.Fatalf("not a denial but got %+v", got)
			}
			return
		}
		if got.Webhook == "" || len(got.Webhook) > maxName || strings.ContainsAny(got.Webhook, "\" \t\\\n") {
			t.Fatalf("bad webhook name %q", got.Webhook)
		}
		if len(got.Message) > maxDetail || strings.ContainsAny(got.Message, "\n\t") || strings.TrimSpace(got.Message) != got.Message {
			t.Fatalf("message not folded or too long: %q", got.Message)
		}
		if _, failed := ParseWebhookFailure(msg); failed {
			t.Fatalf("both a denial %+v and a failed call", got)
		}
		if again, _ := ParseDenial(msg); again != got {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
	})
}

// TestWatcherDenials: a controller's FailedCreate Event that is a denial
// survives the Event slimming and is reported once per resourceVersion,
// with its object; without OnDenial, denials are not reported; a failed
// call is never reported as a denial.
func TestWatcherDenials(t *testing.T) {
	at := time.Date(2026, 12, 6, 5, 8, 19, 0, time.UTC)
	awsNode := caseNamed(t, "event, aws-node's DaemonSet on a joining node")
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "aws-node.1", Namespace: "kube-system", UID: types.UID("e1"), ResourceVersion: "1"},
		InvolvedObject: corev1.ObjectReference{Kind: "DaemonSet", Namespace: "kube-system", Name: "aws-node"},
		Type:           corev1.EventTypeWarning, Reason: "FailedCreate", Count: 3, LastTimestamp: metav1.NewTime(at),
		Message: awsNode.msg,
	}
	rec := newRecorder()
	w := NewWatcher(nil, time.Second, rec.report, nil)
	slim, err := slimEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	w.onEvent(slim) // no OnDenial yet: nothing
	var got []DeniedCreate
	w.OnDenial(func(d DeniedCreate) { got = append(got, d) })
	w.onEvent(slim)
	w.onEvent(slim) // a relist: the same resourceVersion
	want := DeniedCreate{Denial: awsNode.want, At: at, Object: "DaemonSet kube-system/aws-node", Reason: "FailedCreate", Count: 3}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("reports %+v, want one %+v", got, want)
	}
	failed := ev.DeepCopy()
	failed.UID, failed.Message = "e2", "Error creating: "+caseNamed(t, "a failed call (unknown authority, an empty caBundle)").msg
	slim, _ = slimEvent(failed)
	w.onEvent(slim)
	if len(got) != 1 || len(rec.all()) != 1 {
		t.Errorf("a failed call: denials %+v, failures %+v; want it a failure only", got, rec.all())
	}
}

// TestWriteDenialCorpus writes FuzzParseDenial's checked-in seed corpus
// from denialCases: HOOKSCOPE_WRITE_CORPUS=1 go test -run TestWriteDenialCorpus ./apisignals/
func TestWriteDenialCorpus(t *testing.T) {
	if os.Getenv("HOOKSCOPE_WRITE_CORPUS") == "" {
		t.Skip("set HOOKSCOPE_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzParseDenial")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseDenial")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range denialCases {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(c.name))
		body := fmt.Sprintf("go test fuzz v1\nstring(%q)\n", c.msg)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// caseNamed is the denialCases entry of that name.
func caseNamed(t *testing.T, name string) denialCase {
	t.Helper()
	for _, c := range denialCases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no denial case %q", name)
	panic("unreachable")
}
