//go:build linux

package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/hookscope/hookscope/chaos"
)

// findingsOfTwoNodes: while the game day's backend fails on the lab's
// node, a second webhook's backend fails on another node; `hookscope
// findings` lists both, each with the node whose agent saw it, read from
// every agent through the API server's pod proxy.
var findingsOfTwoNodes = openStep{
	name: "observe: hookscope findings lists every agent's findings, each with its node",
	fn: func(ctx context.Context, t *testing.T, wh *chaos.Webhook, finding chaos.AgentFinding) {
		if os.Getenv("PROVIDER") != "kind" {
			t.Log("not on the local provider: its one agent is a process on this machine, not a pod the API server's pod proxy reaches; the kind game day runs this step")
			return
		}
		other, err := otherAgentNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		second, err := lab.DeployWebhook(ctx, chaos.WebhookSpec{Name: "findings-elsewhere", FailurePolicy: admissionv1.Fail, Node: other})
		defer removeWebhooks(t, second)
		if err != nil {
			t.Fatalf("deploying a second webhook on %s: %v", other, err)
		}
		if _, err := serveExpiredCertificate(ctx, second); err != nil {
			t.Fatal(err)
		}
		if _, err := lab.Agent.WaitForFinding(ctx, second.WebhookName, "CertExpired", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{wh.WebhookName: lab.Node, second.WebhookName: other} // call-out -> the backend's node
		var (
			rows    []findingRow
			lastErr error
		)
		err = wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			rows, lastErr = hookscopeFindings(ctx)
			return lastErr == nil && slices.ContainsFunc(rows, func(r findingRow) bool { return r.ID == finding.ID && r.Node == lab.Node }) &&
				slices.ContainsFunc(rows, func(r findingRow) bool { return r.Webhook.Name == second.WebhookName && r.Node == other }), nil
		})
		if err != nil {
			t.Fatalf("hookscope findings: %v; rows %+v, want %s's finding %s from %s and %s's from %s",
				lastErr, rows, wh.WebhookName, finding.ID, lab.Node, second.WebhookName, other)
		}
		// Each row names the node of the agent that reports it (the Lease
		// holder may report the same call-out from the API server's
		// counters: a row of its own, from its node).
		agents, err := lab.Client.CoreV1().Pods("hookscope").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=hookscope-agent"})
		if err != nil {
			t.Fatal(err)
		}
		nodeOf := map[string]string{}
		for _, p := range agents.Items {
			nodeOf[p.Name] = p.Spec.NodeName
		}
		for _, r := range rows {
			if nodeOf[r.Agent] != r.Node {
				t.Errorf("row %s %s says node %s; its agent %s runs on %q", r.Webhook.Name, r.Class, r.Node, r.Agent, nodeOf[r.Agent])
			}
			if node := want[r.Webhook.Name]; r.Node == node && r.Resolved == nil && r.Class != "CertExpired" {
				t.Errorf("row %+v: want CertExpired from the agent on %s", r, node)
			}
		}
		table, _, err := runHookscope(ctx, "findings", "-o", "wide")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hookscope findings -o wide:\n%s", table)
	},
}

// findingRow is a row of `hookscope findings -o json`.
type findingRow struct {
	Node  string `json:"node"`
	Agent string `json:"agent"`
	chaos.AgentFinding
}

// hookscopeFindings runs `hookscope findings -o json` against the lab.
func hookscopeFindings(ctx context.Context) ([]findingRow, error) {
	out, stderr, err := runHookscope(ctx, "findings", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []findingRow `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("hookscope findings -o json: %w\n%s%s", err, out, stderr)
	}
	return list.Items, nil
}

// runHookscope runs the hookscope CLI against the lab's cluster, with its
// stdout and stderr apart.
func runHookscope(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, lab.CLI, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+lab.Provider.Kubeconfig())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("hookscope %s: %w: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String(), nil
}

// otherAgentNode is a Ready node other than the lab's where an agent runs
// (on kind, the control plane's: the joining workers may have no pod
// network yet).
func otherAgentNode(ctx context.Context) (string, error) {
	pods, err := lab.Client.CoreV1().Pods("hookscope").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=hookscope-agent"})
	if err != nil {
		return "", fmt.Errorf("listing the agents: %w", err)
	}
	var nodes []string
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName == lab.Node {
			continue
		}
		n, err := lab.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err == nil && slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}) {
			nodes = append(nodes, n.Name)
		}
	}
	if len(nodes) == 0 {
		return "", fmt.Errorf("no Ready node but %s runs an agent", lab.Node)
	}
	slices.Sort(nodes)
	return nodes[0], nil
}
