//go:build linux

package main

import (
	"context"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/chaos"
)

// localCluster starts a real API server (the game day's local provider) for
// one test and deletes it afterwards.
func localCluster(t *testing.T, name string) (context.Context, *chaos.Local, kubernetes.Interface) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the local cluster needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	local := chaos.NewLocal(name, t.TempDir())
	if err := local.Create(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Delete(context.Background()) })
	c, err := local.Client()
	if err != nil {
		t.Fatal(err)
	}
	return ctx, local, c
}
