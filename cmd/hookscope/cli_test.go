//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// cli runs this test binary as the hookscope CLI (TestMain) in a shell
// whose only kubeconfig is $HOME/.kube/config: HOME is home and KUBECONFIG
// is unset.
type cli struct {
	t    *testing.T
	home string
}

// run runs hookscope ARGS and returns its stdout and stderr, and its exit
// status.
func (c cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+c.home, "HOOKSCOPE_TEST_RUN_CLI=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		c.t.Fatalf("hookscope %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// ok runs hookscope ARGS, which must succeed, and returns its stdout.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("hookscope %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// homeKubeconfig writes $HOME/.kube/config from the local cluster's
// kubeconfig, with two contexts: "real", the cluster, and "dead", an API
// server that is not there; current is the current one.
func homeKubeconfig(t *testing.T, home, kubeconfig, current string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	real := cfg.Contexts[cfg.CurrentContext]
	cfg.Clusters["dead"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Contexts = map[string]*clientcmdapi.Context{
		"real": {Cluster: real.Cluster, AuthInfo: real.AuthInfo},
		"dead": {Cluster: "dead", AuthInfo: real.AuthInfo},
	}
	cfg.CurrentContext = current
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(home, ".kube", "config")); err != nil {
		t.Fatal(err)
	}
}

// brokenWebhook is the article's mpod webhook with its Service gone.
func brokenWebhook(ctx context.Context, t *testing.T, c kubernetes.Interface) {
	t.Helper()
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	mwc := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "aws-load-balancer-webhook"},
		Webhooks: []admissionv1.MutatingWebhook{{
			Name: "mpod.elbv2.k8s.aws", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "kube-system", Name: "aws-load-balancer-webhook-service"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			// Only pods of namespaces labelled so: nothing of the cluster's own.
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
		}},
	}
	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCLIAgainstAPIServer runs the CLI as a user's shell does, against a
// real API server: with only $HOME/.kube/config, then with a --context
// other than the current one; every -o of status and explain; the names
// completion offers; the version.
func TestCLIAgainstAPIServer(t *testing.T) {
	ctx, local, c := localCluster(t, "cli")
	brokenWebhook(ctx, t, c)
	home := t.TempDir()
	hs := cli{t: t, home: home}
	const name = "mpod.elbv2.k8s.aws"

	t.Run("no kubeconfig", func(t *testing.T) {
		_, errOut, code := hs.run("status")
		if code != 1 || !strings.Contains(errOut, "no kubeconfig at --kubeconfig, $KUBECONFIG or ~/.kube/config") {
			t.Errorf("status with no kubeconfig: exit %d, %s", code, errOut)
		}
	})

	t.Run("only ~/.kube/config", func(t *testing.T) {
		homeKubeconfig(t, home, local.Kubeconfig(), "real")
		out := hs.ok("status")
		if !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, name) || !strings.Contains(out, "ServiceNotFound") {
			t.Errorf("status:\n%s", out)
		}
	})

	t.Run("a context other than the current one", func(t *testing.T) {
		homeKubeconfig(t, home, local.Kubeconfig(), "dead")
		if out, errOut, code := hs.run("status", "--request-timeout", "5s"); code == 0 || !strings.Contains(errOut, "127.0.0.1:1") {
			t.Errorf("status on the dead current context: exit %d\n%s%s", code, out, errOut)
		}
		for _, args := range [][]string{{"status", "--context", "real"}, {"--context=real", "status"}} {
			if out := hs.ok(args...); !strings.Contains(out, name) {
				t.Errorf("hookscope %v:\n%s", args, out)
			}
		}
	})

	// The rest on the dead current context, with --context: every command
	// must honour it.
	real := []string{"--context", "real"}
	t.Run("status -o", func(t *testing.T) {
		statusFormats(t, hs, real, name)
	})
	t.Run("explain -o", func(t *testing.T) {
		explainFormats(t, hs, real, name)
	})
	t.Run("-n", func(t *testing.T) {
		if out := hs.ok(append(real, "status", "-n", "kube-system", "-o", "name")...); out != name+"\n" {
			t.Errorf("status -n kube-system: %q", out)
		}
		if out, errOut, code := hs.run(append(real, "status", "-n", "elsewhere")...); code != 0 || out != "" || !strings.Contains(errOut, "No call-outs found") {
			t.Errorf("status -n elsewhere: exit %d, %q, %q", code, out, errOut)
		}
	})
	t.Run("completion", func(t *testing.T) {
		// The word to complete comes last; --context before it.
		for _, args := range [][]string{{"explain", ""}, {"remediate", "ignore", "mp"}, {"remediate", "remove", ""}} {
			out := hs.ok(append(append([]string{"__complete"}, real...), args...)...)
			if names := strings.Split(out, "\n"); !slices.Contains(names, name) {
				t.Errorf("hookscope %v: no %s in\n%s", args, name, out)
			}
		}
		if out := hs.ok(append(append([]string{"__complete"}, real...), "remediate", "ignore", "zz")...); strings.Contains(out, name) {
			t.Errorf("completion of zz offers %s:\n%s", name, out)
		}
		if out := hs.ok("__complete", "status", "--context", ""); !strings.HasPrefix(out, "dead\nreal\n") {
			t.Errorf("completion of --context:\n%s", out)
		}
	})
	t.Run("version", func(t *testing.T) {
		var v VersionInfo
		if err := json.Unmarshal([]byte(hs.ok("version", "-o", "json")), &v); err != nil || v.Version == "" || v.GoVersion == "" {
			t.Errorf("version -o json: %+v, %v", v, err)
		}
		if out := hs.ok("version"); !strings.HasPrefix(out, "hookscope ") {
			t.Errorf("version: %q", out)
		}
	})
}

func statusFormats(t *testing.T, hs cli, real []string, name string) {
	status := func(args ...string) string { return hs.ok(append(append(real, "status"), args...)...) }
	if out := status("-o", "table"); !strings.HasPrefix(out, "NAME ") || strings.Contains(out, "CALLS") {
		t.Errorf("-o table:\n%s", out)
	}
	if out := status("-o", "wide"); !strings.Contains(out, "CALLS") || !strings.Contains(out, "kube-system/aws-load-balancer-webhook-service:443") {
		t.Errorf("-o wide:\n%s", out)
	}
	var list StatusList
	if err := json.Unmarshal([]byte(status("-o", "json")), &list); err != nil || len(list.Items) != 1 || list.Items[0].Name != name {
		t.Errorf("-o json: %+v, %v", list, err)
	}
	out := status("-o", "yaml")
	list = StatusList{}
	if err := yaml.Unmarshal([]byte(out), &list); err != nil || len(list.Items) != 1 || list.Items[0].Health != "ServiceNotFound" ||
		!strings.Contains(out, "kind: StatusList") {
		t.Errorf("-o yaml: %+v, %v\n%s", list, err, out)
	}
	if out := status("-o", "name"); out != name+"\n" {
		t.Errorf("-o name: %q", out)
	}
	if out := status("-o", `jsonpath={range .items[?(@.health!="Healthy")]}{.name}{" "}{.failurePolicy}{"\n"}{end}`); out != name+" Fail\n" {
		t.Errorf("-o jsonpath: %q", out)
	}
	if _, errOut, code := hs.run(append(real, "status", "-o", "xml")...); code == 0 || !strings.Contains(errOut, `-o "xml": want`) {
		t.Errorf("-o xml: exit %d, %s", code, errOut)
	}
}

func explainFormats(t *testing.T, hs cli, real []string, name string) {
	explain := func(args ...string) string { return hs.ok(append(append(real, "explain", name), args...)...) }
	text := explain()
	if !strings.Contains(text, "health: ServiceNotFound") || !strings.Contains(text, "1. Option 1: ") || strings.Contains(text, "    fix: ") {
		t.Errorf("explain:\n%s", text)
	}
	if out := explain("-o", "wide"); !strings.HasPrefix(out, text[:strings.Index(text, "\n")]) {
		t.Errorf("-o wide:\n%s", out)
	}
	if out := explain("-o", "table"); !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, name) {
		t.Errorf("-o table:\n%s", out)
	}
	var e Explanation
	if err := json.Unmarshal([]byte(explain("-o", "json")), &e); err != nil || e.CallOut.Name != name || e.Effect == "" || len(e.Fixes) == 0 {
		t.Errorf("-o json: %+v, %v", e, err)
	}
	e = Explanation{}
	if err := yaml.Unmarshal([]byte(explain("-o", "yaml")), &e); err != nil || e.CallOut.Health != "ServiceNotFound" {
		t.Errorf("-o yaml: %+v, %v", e, err)
	}
	if out := explain("-o", "jsonpath={.fixes[0]}"); !strings.HasPrefix(out, "Option 1: ") {
		t.Errorf("-o jsonpath: %q", out)
	}
}
