package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/hookscope/hookscope/api"
	"github.com/hookscope/hookscope/callout"
	"github.com/hookscope/hookscope/findings"
)

// proxied is a pod proxy's answer in the fake clientset.
type proxied struct {
	body []byte
	err  error
}

func (p proxied) DoRaw(context.Context) ([]byte, error) { return p.body, p.err }
func (p proxied) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(p.body)), p.err
}

var _ rest.ResponseWrapper = proxied{}

// agentPod is an agent pod as the chart makes it, on node, in phase.
func agentPod(name, node string, phase corev1.PodPhase, args ...string) *corev1.Pod {
	if args == nil {
		args = []string{"agent", "--listen=127.0.0.1:9477", "--peer-listen=$(POD_IP):9478", "--peer-findings"}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "hookscope", Labels: map[string]string{"app.kubernetes.io/name": "hookscope-agent"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Args: args}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func finding(id, webhook string, class findings.Class, seen time.Time, resolved *time.Time) findings.Finding {
	return findings.Finding{ID: id, Class: class, Webhook: callout.Ref{Kind: "Validating", Configuration: webhook + "-cfg", Name: webhook},
		FailurePolicy: "Fail", Effect: findings.WritesRejected, Backend: netip.MustParseAddrPort("10.0.1.7:8443"), FirstSeen: seen, Resolved: resolved}
}

// fakeAgents is a clientset whose pod proxy answers for the agents in
// answers (pod name -> its /findings, or an error), recording what was
// asked.
func fakeAgents(t *testing.T, pods []*corev1.Pod, answers map[string]any) (*fake.Clientset, *[]string) {
	t.Helper()
	c := fake.NewClientset()
	for _, p := range pods {
		if _, err := c.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var asked []string
	c.PrependProxyReactor("pods", func(a k8stesting.Action) (bool, rest.ResponseWrapper, error) {
		get := a.(k8stesting.ProxyGetAction)
		asked = append(asked, get.GetNamespace()+"/"+get.GetName()+":"+get.GetPort()+get.GetPath())
		switch v := answers[get.GetName()].(type) {
		case error:
			return true, proxied{err: v}, nil
		case api.FindingsResponse:
			b, err := json.Marshal(v)
			return true, proxied{body: b, err: err}, nil
		}
		return true, proxied{body: []byte("not json")}, nil
	})
	return c, &asked
}

var query = agentQuery{namespace: "hookscope", selector: "app.kubernetes.io/name=hookscope-agent", timeout: time.Second}

func TestFindingsFromEveryAgent(t *testing.T) {
	now := time.Now()
	minuteAgo, hoursAgo := now.Add(-time.Minute), now.Add(-2*time.Hour)
	pods := []*corev1.Pod{
		agentPod("agent-a", "node-a", corev1.PodRunning), agentPod("agent-b", "node-b", corev1.PodRunning),
		agentPod("agent-c", "node-c", corev1.PodRunning), agentPod("agent-d", "node-d", corev1.PodPending),
		agentPod("agent-e", "node-e", corev1.PodRunning, "agent", "--peer-listen=$(POD_IP):9478"),
		agentPod("agent-f", "node-f", corev1.PodRunning, "agent", "--peer-listen", "$(POD_IP):19478", "--peer-findings=true"),
	}
	c, asked := fakeAgents(t, pods, map[string]any{
		"agent-a": api.FindingsResponse{
			Open:     []findings.Finding{finding("a1", "expired.example.com", findings.CertExpired, now.Add(-5*time.Minute), nil)},
			Resolved: []findings.Finding{finding("a2", "refused.example.com", findings.ConnectionRefused, now.Add(-3*time.Minute), &minuteAgo), finding("a3", "old.example.com", findings.NoEndpoints, now.Add(-3*time.Hour), &hoursAgo)},
		},
		"agent-b": api.FindingsResponse{Open: []findings.Finding{finding("b1", "gone.example.com", findings.ServiceNotFound, now.Add(-10*time.Minute), nil)}},
		"agent-c": apierrors.NewServiceUnavailable("error trying to reach service: dial tcp 172.18.0.4:9478: connect: connection refused"),
		"agent-f": api.FindingsResponse{},
	})
	list, err := gatherFindings(context.Background(), c, query)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range list.Items {
		got = append(got, r.Node+"/"+r.Agent+"/"+r.ID)
	}
	// Open first, the oldest first; then resolved, the latest first.
	if want := "node-b/agent-b/b1 node-a/agent-a/a1 node-a/agent-a/a2 node-a/agent-a/a3"; strings.Join(got, " ") != want {
		t.Errorf("rows %v, want %s", got, want)
	}
	if r := recent(list.Items, 15*time.Minute, now); len(r) != 3 || r[2].ID != "a2" {
		t.Errorf("recent: %v, want the one resolved two hours ago left out", r)
	}
	unreachable := map[string]string{}
	for _, u := range list.Unreachable {
		unreachable[u.Node+"/"+u.Agent] = u.Reason
	}
	for agent, want := range map[string]string{
		"node-c/agent-c": "could not reach port 9478: error trying to reach service: dial tcp 172.18.0.4:9478: connect: connection refused",
		"node-d/agent-d": "the pod is Pending, not Running",
		"node-e/agent-e": "does not serve its findings on its peer port (the chart's agent.peerFindings is false)",
	} {
		if !strings.Contains(unreachable[agent], want) {
			t.Errorf("%s: reason %q, want %q", agent, unreachable[agent], want)
		}
	}
	if len(list.Unreachable) != 3 {
		t.Errorf("unreachable %+v, want agents c, d and e", list.Unreachable)
	}
	wantAsked := map[string]bool{"hookscope/agent-a:9478/findings": true, "hookscope/agent-b:9478/findings": true,
		"hookscope/agent-c:9478/findings": true, "hookscope/agent-f:19478/findings": true}
	if len(*asked) != len(wantAsked) {
		t.Errorf("asked %v, want %v", *asked, wantAsked)
	}
	for _, a := range *asked {
		if !wantAsked[a] {
			t.Errorf("asked %s; want only %v", a, wantAsked)
		}
	}
}

func TestFindingsWhenNoAgentAnswers(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods/proxy"}, "agent-a", nil)
	for _, tc := range []struct {
		name    string
		pods    []*corev1.Pod
		answers map[string]any
		want    []string
	}{
		{"no pods", nil, nil, []string{"no hookscope agent pods (app.kubernetes.io/name=hookscope-agent) in namespace hookscope", "-n names"}},
		{"forbidden", []*corev1.Pod{agentPod("agent-a", "node-a", corev1.PodRunning)}, map[string]any{"agent-a": forbidden},
			[]string{"could be read (1 tried)", "kubectl auth can-i get pods/proxy -n hookscope", "Running", "agent.peerFindings=true"}},
		{"not running", []*corev1.Pod{agentPod("agent-a", "node-a", corev1.PodPending)}, nil, []string{"pods/proxy", "Running"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods := tc.pods
			c, _ := fakeAgents(t, pods, tc.answers)
			list, err := gatherFindings(context.Background(), c, query)
			if err == nil {
				t.Fatalf("no error; list %+v", list)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.name == "forbidden" && (len(list.Unreachable) != 1 || !strings.Contains(list.Unreachable[0].Reason, "may not get pods/proxy")) {
				t.Errorf("unreachable %+v", list.Unreachable)
			}
		})
	}
}

func TestAgentPeerPort(t *testing.T) {
	for _, tc := range []struct {
		args []string
		port int
		skip string
	}{
		{[]string{"agent", "--peer-listen=$(POD_IP):9478", "--peer-findings"}, 9478, ""},
		{[]string{"agent", "--peer-listen", "10.0.0.1:7000", "--peer-findings=true"}, 7000, ""},
		{[]string{"agent", "--peer-listen=$(POD_IP):9478", "--peer-findings=false"}, 0, "agent.peerFindings is false"},
		{[]string{"agent", "--peer-listen=$(POD_IP):9478"}, 0, "agent.peerFindings is false"},
		{[]string{"agent", "--peer-findings"}, 0, "agent.peerPort is 0"},
		{[]string{"something-else"}, defaultPeerPort, ""},
	} {
		port, skip := agentPeerPort(*agentPod("p", "n", corev1.PodRunning, tc.args...))
		if port != tc.port || !strings.Contains(skip, tc.skip) || (tc.skip == "" && skip != "") {
			t.Errorf("%v: port %d, %q; want %d, %q", tc.args, port, skip, tc.port, tc.skip)
		}
	}
}

func TestFindingsOutput(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	resolved := now.Add(-42 * time.Second)
	rows := []NodeFinding{
		{Node: "node-b", Agent: "agent-b", Finding: finding("b1", "gone.example.com", findings.ServiceNotFound, now.Add(-3*time.Minute-12*time.Second), nil)},
		{Node: "node-a", Agent: "agent-a", Finding: finding("a2", "refused.example.com", findings.ConnectionRefused, now.Add(-5*time.Minute), &resolved)},
	}
	rows[0].Impact = &findings.Impact{Kind: findings.ImpactNodeNotReady, Object: "DaemonSet kube-system/aws-node"}
	list := FindingList{Items: rows, Unreachable: []UnreachableAgent{{Node: "node-c", Agent: "agent-c", Reason: "no answer on port 9478 in time"}}}
	print := func(format string, headers bool) string {
		t.Helper()
		out, err := parseOutput(format, "table", "wide")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := printFindings(&b, out, list, headers, now); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	table := strings.Split(print("table", true), "\n")
	for i, want := range [][]string{
		{"NODE", "CLASS", "CALL-OUT", "EFFECT", "SINCE", "RESOLVED"},
		{"node-b", "ServiceNotFound", "gone.example.com", "writes rejected", "3m12s", "-"},
		{"node-a", "ConnectionRefused", "refused.example.com", "writes rejected", "5m", "42s ago"},
	} {
		if got := strings.Join(strings.Fields(table[i]), " "); got != strings.Join(want, " ") {
			t.Errorf("table line %d: %q, want %q", i, got, strings.Join(want, " "))
		}
	}
	if wide := print("wide", true); !strings.Contains(wide, "IMPACT") || !strings.Contains(wide, "NodeNotReady DaemonSet kube-system/aws-node") ||
		!strings.Contains(wide, "10.0.1.7:8443") || !strings.Contains(wide, "agent-b") || !strings.Contains(wide, "gone.example.com-cfg") {
		t.Errorf("-o wide:\n%s", wide)
	}
	if rest := print("table", false); strings.Contains(rest, "NODE") || !strings.Contains(rest, "gone.example.com") {
		t.Errorf("a table without headers:\n%s", rest)
	}
	var back FindingList
	if err := json.Unmarshal([]byte(print("json", true)), &back); err != nil || len(back.Items) != 2 || back.Items[0].Node != "node-b" ||
		back.Items[0].ID != "b1" || back.Items[1].Resolved == nil || len(back.Unreachable) != 1 {
		t.Errorf("-o json: %+v, %v", back, err)
	}
	if y := print("yaml", true); !strings.Contains(y, "kind: FindingList") || yaml.Unmarshal([]byte(y), &back) != nil {
		t.Errorf("-o yaml:\n%s", y)
	}
	if got := print(`jsonpath={range .items[*]}{.node} {.webhook.name} {.class}{"\n"}{end}`, true); got != "node-b gone.example.com ServiceNotFound\nnode-a refused.example.com ConnectionRefused\n" {
		t.Errorf("-o jsonpath: %q", got)
	}
}

// TestWatchFindings: the first read is printed whole, then only what
// opens, changes or resolves; an agent that stops answering is said once,
// and a read where none answers does not end the watch.
func TestWatchFindings(t *testing.T) {
	now := time.Now()
	open := NodeFinding{Node: "node-a", Agent: "agent-a", Finding: finding("a1", "expired.example.com", findings.CertExpired, now.Add(-time.Minute), nil)}
	resolvedAt := now
	resolved := open
	resolved.Resolved = &resolvedAt
	second := NodeFinding{Node: "node-b", Agent: "agent-b", Finding: finding("b1", "gone.example.com", findings.ServiceNotFound, now, nil)}
	down := []UnreachableAgent{{Node: "node-c", Agent: "agent-c", Reason: "no answer on port 9478 in time"}}
	reads := []struct {
		list FindingList
		err  error
	}{
		{list: FindingList{Items: []NodeFinding{open}}},
		{list: FindingList{Items: []NodeFinding{open}, Unreachable: down}},             // nothing new; agent-c down
		{list: FindingList{Items: []NodeFinding{open, second}, Unreachable: down}},     // b1 opens
		{list: FindingList{Unreachable: down}, err: noAgentAnswered(query, down)},      // none answers
		{list: FindingList{Items: []NodeFinding{resolved, second}, Unreachable: down}}, // a1 resolves
		{list: FindingList{Items: []NodeFinding{resolved, second}}},                    // agent-c back
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	gather := func(context.Context) (FindingList, error) {
		if n >= len(reads) {
			cancel()
			return FindingList{}, context.Canceled
		}
		n++
		return reads[n-1].list, reads[n-1].err
	}
	out, _ := parseOutput("table", "table", "wide")
	var stdout, stderr strings.Builder
	if err := watchFindings(ctx, &stdout, &stderr, out, gather, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		f := strings.Fields(l)
		lines = append(lines, f[0]+" "+f[1]+" "+f[len(f)-1])
	}
	if want := "NODE CLASS RESOLVED|node-a CertExpired -|node-b ServiceNotFound -|node-a CertExpired ago"; strings.Join(lines, "|") != want {
		t.Errorf("watch printed\n%s\nwant rows %s", stdout.String(), want)
	}
	errs := stderr.String()
	if strings.Count(errs, "agent agent-c (node-c) not read") != 1 || strings.Count(errs, "could be read") != 1 || !strings.Contains(errs, "agent agent-c read again") {
		t.Errorf("stderr:\n%s", errs)
	}
}
