//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// hookscope runs the CLI in process with the cluster's kubeconfig and
// returns what it printed and its error.
func hookscope(kubeconfig string, args ...string) (string, error) {
	root := rootCommand("hookscope")
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestDryRunServerAgainstAPIServer: --dry-run=server sends each write to
// the API server, which validates and admits it and stores nothing; what
// only the API server can refuse (an invalid object, RBAC, an admission
// policy) fails there, where --dry-run=client said it would be done.
func TestDryRunServerAgainstAPIServer(t *testing.T) {
	ctx, local, c := localCluster(t, "dryrun")
	kc := local.Kubeconfig()
	cfg, err := restConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fail, none := admissionv1.Fail, admissionv1.SideEffectClassNone
	vwc := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "a.example.com", FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: "hooks", Name: "svc"}},
			Rules: []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hookscope.dev/none": "x"}},
		}}}
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir) // backups go to the working directory

	t.Run("accepted: nothing changes, no backup", func(t *testing.T) {
		out, err := hookscope(kc, "remediate", "ignore", "a.example.com", "--dry-run=server")
		if err != nil || !strings.Contains(out, "server dry run: the API server accepted the change; nothing changed") {
			t.Fatalf("ignore --dry-run=server: %v\n%s", err, out)
		}
		got, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "policy", metav1.GetOptions{})
		if err != nil || *got.Webhooks[0].FailurePolicy != admissionv1.Fail {
			t.Errorf("after a server dry run: %v, failurePolicy %s", err, *got.Webhooks[0].FailurePolicy)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "*.yaml")); len(files) != 0 {
			t.Errorf("a server dry run wrote backups %v", files)
		}
		if _, err := hookscope(kc, "remediate", "ignore", "a.example.com", "--dry-run=server", "--yes"); err == nil {
			t.Error("--dry-run=server --yes did not fail")
		}
	})

	t.Run("invalid: a backup the API server rejects", func(t *testing.T) {
		backup := filepath.Join(dir, "edited-backup.yaml")
		// v1 takes sideEffects None or NoneOnDryRun only; the backup reads
		// as a configuration all the same.
		invalid := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: policy
webhooks:
- name: a.example.com
  sideEffects: Unknown
  admissionReviewVersions: [v1]
  clientConfig:
    service: {namespace: hooks, name: svc}
`
		if err := os.WriteFile(backup, []byte(invalid), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := hookscope(kc, "restore", backup, "--dry-run=client"); err != nil || !strings.Contains(out, "will be put back") {
			t.Fatalf("restore --dry-run=client: %v\n%s", err, out)
		}
		_, err := hookscope(kc, "restore", backup, "--dry-run=server")
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "sideEffects") {
			t.Errorf("restore --dry-run=server of sideEffects Unknown: %v, want the API server's Invalid", err)
		}
	})

	t.Run("forbidden: --as a user who may read but not write", func(t *testing.T) {
		readOnly(ctx, t, c, "jane")
		if out, err := hookscope(kc, "--as", "jane", "remediate", "ignore", "a.example.com"); err != nil || !strings.Contains(out, "dry run: nothing changed") {
			t.Fatalf("--as jane, client dry run: %v\n%s", err, out)
		}
		_, err := hookscope(kc, "--as", "jane", "remediate", "ignore", "a.example.com", "--dry-run=server")
		if !apierrors.IsForbidden(err) {
			t.Errorf("--as jane --dry-run=server: %v, want Forbidden", err)
		}
	})

	t.Run("denied by an admission policy", func(t *testing.T) {
		api := apiServiceDeletionDenied(ctx, t, c, dyn)
		if out, err := hookscope(kc, "remediate", "remove", api, "--dry-run=client"); err != nil || !strings.Contains(out, "dry run: nothing changed") {
			t.Fatalf("remove --dry-run=client: %v\n%s", err, out)
		}
		_, err := hookscope(kc, "remediate", "remove", api, "--dry-run=server")
		if err == nil || !strings.Contains(err.Error(), "APIServices change through the platform pipeline only") {
			t.Errorf("remove --dry-run=server: %v, want the policy's denial", err)
		}
		if _, err := dyn.Resource(apiServicesGVR).Get(ctx, api, metav1.GetOptions{}); err != nil {
			t.Errorf("the APIService after the dry runs: %v", err)
		}
	})
}

// readOnly lets user read webhook configurations and nothing else.
func readOnly(ctx context.Context, t *testing.T, c kubernetes.Interface, user string) {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "webhook-reader"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations", "mutatingwebhookconfigurations"},
		Verbs: []string{"get", "list"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "webhook-reader-" + user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer sees a new binding from its informer, a moment after
	// the write: wait until it lets user list before going on.
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Verb: "list"}}}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		return err == nil && got.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("the API server never let %s list webhook configurations: %v", user, err)
	}
}

// apiServiceDeletionDenied creates an aggregated API and a
// ValidatingAdmissionPolicy that denies deleting any APIService, and
// returns the APIService's name once the policy is in force.
func apiServiceDeletionDenied(ctx context.Context, t *testing.T, c kubernetes.Interface, dyn dynamic.Interface) string {
	t.Helper()
	const name = "v1beta1.dryrun.example.com"
	api := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": map[string]any{"name": name},
		"spec": map[string]any{"group": "dryrun.example.com", "version": "v1beta1", "groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			"insecureSkipTLSVerify": true, "service": map[string]any{"namespace": "kube-system", "name": "dryrun"}},
	}}
	if _, err := dyn.Resource(apiServicesGVR).Create(ctx, api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deny := admissionv1.Deny
	policy := &admissionv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "apiservices-by-pipeline"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
				Operations: []admissionv1.OperationType{admissionv1.Delete},
				Rule:       admissionv1.Rule{APIGroups: []string{"apiregistration.k8s.io"}, APIVersions: []string{"*"}, Resources: []string{"apiservices"}}}}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "APIServices change through the platform pipeline only"}},
		}}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name, ValidationActions: []admissionv1.ValidationAction{deny}}}
	if _, err := c.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server compiles and loads a policy within a second or so.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := dyn.Resource(apiServicesGVR).Delete(ctx, name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("the policy never denied deleting %s: %v", name, err)
	}
	return name
}
