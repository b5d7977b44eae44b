//go:build linux

package chaos

import (
	"context"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
)

// LocalForTest starts a local cluster (a real API server; 10.0.0.0/16 routed
// unreachable) for one test, bounded by timeout, and deletes it when the
// test ends, keeping its logs in a temporary directory if the test failed.
// It skips the test where it cannot run: not root, or -short.
func LocalForTest(t testing.TB, name string, timeout time.Duration) (context.Context, *Local, kubernetes.Interface) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a local control plane")
	}
	if os.Geteuid() != 0 {
		t.Skip("the local cluster needs root (it installs an `ip route` guard)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	local := NewLocal(name, t.TempDir())
	t.Cleanup(func() {
		if t.Failed() {
			if dir, err := os.MkdirTemp("", "hookscope-"+name+"-logs-"); err == nil {
				err = local.CollectLogs(dir)
				t.Logf("cluster logs in %s (err: %v)", dir, err)
			}
		}
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := local.Delete(dctx); err != nil {
			t.Errorf("deleting the cluster: %v", err)
		}
	})
	if err := local.Create(ctx); err != nil {
		t.Fatal(err)
	}
	client, err := local.Client()
	if err != nil {
		t.Fatal(err)
	}
	return ctx, local, client
}
