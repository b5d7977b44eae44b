//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/api"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/podnet"
)

// staticFindings is an agent's findings, as its store would give them.
type staticFindings []findings.Finding

func (s staticFindings) Findings() (open, resolved []findings.Finding) { return s, nil }

// TestFindingsThroughThePodProxy: against a real API server, `hookscope
// findings` reads two agents on two nodes through the API server's pod
// proxy (each agent's /findings served from a network namespace that owns
// its pod's IP), names the third, which does not answer, on stderr, and
// needs exactly the Role deploy/README.md documents.
func TestFindingsThroughThePodProxy(t *testing.T) {
	ctx, local, c := localCluster(t, "findings")
	if err := podnet.Guard(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hookscope"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	served := map[string]staticFindings{
		"node-a": {finding("a1", "expired.example.com", findings.CertExpired, now.Add(-2*time.Minute), nil)},
		"node-b": {finding("b1", "gone.example.com", findings.ServiceNotFound, now.Add(-5*time.Minute), nil)},
		"node-c": nil, // its agent does not answer
	}
	for _, node := range []string{"node-a", "node-b", "node-c"} {
		if err := local.AddNode(ctx, node); err != nil {
			t.Fatal(err)
		}
		ip := runAgentPod(ctx, t, c, "hookscope-agent-"+node, node)
		if served[node] != nil {
			serveFindingsAt(t, ip, served[node])
		}
	}

	home := t.TempDir()
	homeKubeconfig(t, home, local.Kubeconfig(), "real")
	hs := cli{t: t, home: home}
	out, errOut, code := hs.run("findings", "-o", "json")
	var list FindingList
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil {
		t.Fatalf("findings -o json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	var rows []string
	for _, r := range list.Items {
		rows = append(rows, r.Node+"/"+r.Agent+"/"+r.ID+"/"+string(r.Class))
	}
	if want := "node-b/hookscope-agent-node-b/b1/ServiceNotFound node-a/hookscope-agent-node-a/a1/CertExpired"; strings.Join(rows, " ") != want {
		t.Errorf("rows %v, want %s", rows, want)
	}
	if !strings.Contains(errOut, "Warning: agent hookscope-agent-node-c (node-c) not read: the API server could not reach port 9478") {
		t.Errorf("stderr does not name the agent that does not answer:\n%s", errOut)
	}
	if len(list.Unreachable) != 1 || list.Unreachable[0].Agent != "hookscope-agent-node-c" {
		t.Errorf("unreachable %+v", list.Unreachable)
	}
	table := hs.ok("findings")
	if lines := strings.Split(table, "\n"); !strings.HasPrefix(lines[0], "NODE ") || !strings.HasPrefix(lines[1], "node-b ") || !strings.HasPrefix(lines[2], "node-a ") {
		t.Errorf("findings:\n%s", table)
	}

	t.Run("the operator's Role", func(t *testing.T) {
		operatorRole(ctx, t, c, false)
		var (
			errOut string
			code   int
		)
		// The authorizer sees a new Role within a moment: until then jane
		// cannot list the pods either.
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			_, errOut, code = hs.run("findings", "--as", "jane")
			return !strings.Contains(errOut, "listing the agent pods"), nil
		})
		if code != 1 || !strings.Contains(errOut, "kubectl auth can-i get pods/proxy -n hookscope") || !strings.Contains(errOut, "may not get pods/proxy") {
			t.Errorf("findings as jane without pods/proxy: exit %d\n%s", code, errOut)
		}
		operatorRole(ctx, t, c, true)
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			out, _, code := hs.run("findings", "--as", "jane")
			return code == 0 && strings.Contains(out, "gone.example.com"), nil
		})
		if err != nil {
			out, errOut, code := hs.run("findings", "--as", "jane")
			t.Errorf("findings as jane with deploy/README.md's Role: exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("-n where no agent runs", func(t *testing.T) {
		if _, errOut, code := hs.run("findings", "-n", "default"); code != 1 || !strings.Contains(errOut, "no hookscope agent pods") {
			t.Errorf("findings -n default: exit %d\n%s", code, errOut)
		}
	})
}

// runAgentPod creates an agent pod as the chart does on node and returns
// the IP kwok gives it.
func runAgentPod(ctx context.Context, t *testing.T, c kubernetes.Interface, name, node string) netip.Addr {
	t.Helper()
	pod := agentPod(name, node, "")
	pod.Spec.Containers[0].Image = "hookscope:dev"
	pod.Status = corev1.PodStatus{}
	if _, err := c.CoreV1().Pods("hookscope").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip netip.Addr
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("hookscope").Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return false, nil
		}
		ip, err = netip.ParseAddr(p.Status.PodIP)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("pod %s not Running with an IP: %v", name, err)
	}
	return ip
}

// serveFindingsAt serves GET /findings on port 9478 from a network
// namespace that owns ip, as an agent's peer port does with
// --peer-findings.
func serveFindingsAt(t *testing.T, ip netip.Addr, src staticFindings) {
	t.Helper()
	pod, err := podnet.New("fi", ip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pod.Close() })
	ln, err := pod.Listen(defaultPeerPort)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /findings", api.FindingsHandler(src))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

// operatorRole gives user jane deploy/README.md's Role in hookscope
// (withProxy: with its pods/proxy rule, else without).
func operatorRole(ctx context.Context, t *testing.T, c kubernetes.Interface, withProxy bool) {
	t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "hookscope-findings-reader", Namespace: "hookscope"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}
	if withProxy {
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/proxy"}, Verbs: []string{"get"}})
		if _, err := c.RbacV1().Roles("hookscope").Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := c.RbacV1().Roles("hookscope").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hookscope-findings-reader", Namespace: "hookscope"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "hookscope-findings-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "jane"}},
	}
	if _, err := c.RbacV1().RoleBindings("hookscope").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
