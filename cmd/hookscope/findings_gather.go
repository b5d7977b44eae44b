package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/api"
	"github.com/hookscope/hookscope/cmd/internal/agentcmd"
	"github.com/hookscope/hookscope/findings"
)

// Each agent keeps its own findings: those of the backends on its node,
// and, on the agent holding the Lease, the cluster-wide ones. `hookscope
// findings` reads every agent's through the API server's pod proxy
// (GET /api/v1/namespaces/NS/pods/POD:PORT/proxy/findings): the operator
// needs `get` on pods/proxy in the agents' namespace, and no port-forward.
// The agents run on the host network with their API on loopback, so the
// API server reaches them on the peer port (the node's address), where
// --peer-findings serves GET /findings.

// NodeFinding is one row of `hookscope findings`: a finding and the agent
// (and its node) that reports it.
type NodeFinding struct {
	Node  string `json:"node"`
	Agent string `json:"agent"` // the agent's pod
	findings.Finding
}

// UnreachableAgent is an agent whose findings could not be read, and why.
type UnreachableAgent struct {
	Node   string `json:"node,omitempty"`
	Agent  string `json:"agent"`
	Reason string `json:"reason"`
}

// FindingList is findings' -o json and -o yaml: every agent's rows, and
// the agents that could not be read.
type FindingList struct {
	Items       []NodeFinding      `json:"items"`
	Unreachable []UnreachableAgent `json:"unreachable,omitempty"`
}

// agentQuery is where and how the agents are read.
type agentQuery struct {
	namespace string
	selector  string
	port      int           // 0: each agent's peer port, from its pod's arguments
	timeout   time.Duration // bound on one agent's answer
}

// defaultPeerPort is the chart's agent.peerPort.
const defaultPeerPort = 9478

// agentTarget is one agent pod: where to read it, or why it cannot be.
type agentTarget struct {
	pod, node string
	port      int
	skip      string // why it is not asked ("" when it is)
}

// agentTargets are the agent pods to read, by node.
func agentTargets(pods []corev1.Pod, port int) []agentTarget {
	var out []agentTarget
	for _, p := range pods {
		t := agentTarget{pod: p.Name, node: p.Spec.NodeName, port: port}
		switch {
		case p.DeletionTimestamp != nil:
			continue // a replaced agent: its successor is in the list
		case p.Status.Phase != corev1.PodRunning:
			t.skip = fmt.Sprintf("the pod is %s, not Running", cmp.Or(string(p.Status.Phase), "not started"))
		case port == 0:
			t.port, t.skip = agentPeerPort(p)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b agentTarget) int { return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.pod, b.pod)) })
	return out
}

// agentPeerPort is the port where the agent of pod serves its findings,
// read from its arguments (--peer-listen, --peer-findings), or why it
// serves them nowhere the API server can reach.
func agentPeerPort(p corev1.Pod) (int, string) {
	for _, c := range p.Spec.Containers {
		args := append(slices.Clone(c.Command), c.Args...)
		if !slices.Contains(args, "agent") {
			continue
		}
		listen, served := "", false
		for i, a := range args {
			name, value, hasValue := strings.Cut(a, "=")
			if !hasValue && i+1 < len(args) && name == "--peer-listen" {
				value = args[i+1]
			}
			switch name {
			case "--peer-listen":
				listen = value
			case "--peer-findings":
				served = !hasValue || value == "true"
			}
		}
		port, ok := agentcmd.PeerPort(listen)
		switch {
		case !ok:
			return 0, "its peer port is off (the chart's agent.peerPort is 0)"
		case !served:
			return 0, "it does not serve its findings on its peer port (the chart's agent.peerFindings is false)"
		}
		return port, ""
	}
	return defaultPeerPort, ""
}

// gatherFindings reads every agent's findings. It fails only when the
// agents cannot be listed or none of them answers; the others are named
// in the list's Unreachable.
func gatherFindings(ctx context.Context, c kubernetes.Interface, q agentQuery) (FindingList, error) {
	pods, err := c.CoreV1().Pods(q.namespace).List(ctx, metav1.ListOptions{LabelSelector: q.selector})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return FindingList{}, fmt.Errorf("listing the agent pods in namespace %s: %w (you need get and list on pods there)", q.namespace, err)
		}
		return FindingList{}, fmt.Errorf("listing the agent pods in namespace %s: %w", q.namespace, err)
	}
	targets := agentTargets(pods.Items, q.port)
	if len(targets) == 0 {
		return FindingList{}, fmt.Errorf("no hookscope agent pods (%s) in namespace %s: is hookscope installed there? -n names the agents' namespace", q.selector, q.namespace)
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		list = FindingList{Items: []NodeFinding{}}
	)
	for _, t := range targets {
		if t.skip != "" {
			list.Unreachable = append(list.Unreachable, UnreachableAgent{Node: t.node, Agent: t.pod, Reason: t.skip})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := readAgent(ctx, c, q, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				list.Unreachable = append(list.Unreachable, UnreachableAgent{Node: t.node, Agent: t.pod, Reason: err.Error()})
				return
			}
			list.Items = append(list.Items, rows...)
		}()
	}
	wg.Wait()
	slices.SortFunc(list.Unreachable, func(a, b UnreachableAgent) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Agent, b.Agent))
	})
	if len(list.Unreachable) == len(targets) {
		return list, noAgentAnswered(q, list.Unreachable)
	}
	sortFindings(list.Items)
	return list, nil
}

// readAgent reads one agent's findings through the API server's pod proxy.
func readAgent(ctx context.Context, c kubernetes.Interface, q agentQuery, t agentTarget) ([]NodeFinding, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	raw, err := c.CoreV1().Pods(q.namespace).ProxyGet("http", t.pod, strconv.Itoa(t.port), "/findings", nil).DoRaw(ctx)
	if err != nil {
		return nil, proxyError(err, t.port)
	}
	var resp api.FindingsResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("port %d answered something other than findings: %w", t.port, err)
	}
	var rows []NodeFinding
	for _, f := range append(resp.Open, resp.Resolved...) {
		rows = append(rows, NodeFinding{Node: t.node, Agent: t.pod, Finding: f})
	}
	return rows, nil
}

// proxyError says in one line why the pod proxy did not reach an agent.
func proxyError(err error, port int) error {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err):
		return errors.New("forbidden: you may not get pods/proxy in its namespace")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer on port %d in time", port)
	case errors.As(err, &status):
		msg := cmp.Or(strings.TrimSpace(status.Status().Message), err.Error())
		return fmt.Errorf("the API server could not reach port %d: %s", port, msg)
	}
	return fmt.Errorf("reading port %d through the API server: %w", port, err)
}

// noAgentAnswered is the error when no agent could be read: what to check.
func noAgentAnswered(q agentQuery, unreachable []UnreachableAgent) error {
	return fmt.Errorf("no hookscope agent in namespace %s could be read (%d tried). Check that you may get pods/proxy there "+
		"(kubectl auth can-i get pods/proxy -n %s), that the agent pods are Running, and that the agents serve their findings "+
		"on their peer port (the chart's agent.peerFindings=true and agent.peerPort; the API server must reach the nodes on that port)",
		q.namespace, len(unreachable), q.namespace)
}

// sortFindings orders rows as an incident is read: open ones first, the
// oldest first (the first failure is often the cause); then resolved ones,
// the latest first.
func sortFindings(rows []NodeFinding) {
	slices.SortStableFunc(rows, func(a, b NodeFinding) int {
		ao, bo := a.Resolved == nil, b.Resolved == nil
		switch {
		case ao != bo:
			if ao {
				return -1
			}
			return 1
		case ao:
			if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
				return c
			}
		default:
			if c := b.Resolved.Compare(*a.Resolved); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
}

// recent keeps the open rows and those resolved within window of now
// (every one when window is 0 or less).
func recent(rows []NodeFinding, window time.Duration, now time.Time) []NodeFinding {
	if window <= 0 {
		return rows
	}
	out := []NodeFinding{}
	for _, r := range rows {
		if r.Resolved == nil || now.Sub(*r.Resolved) <= window {
			out = append(out, r)
		}
	}
	return out
}
