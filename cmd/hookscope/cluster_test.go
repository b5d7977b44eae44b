//go:build linux

package main

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/hookscope/hookscope/chaos"
)

// localCluster starts a real API server (the game day's local provider) for
// one test and deletes it afterwards.
func localCluster(t *testing.T, name string) (context.Context, *chaos.Local, kubernetes.Interface) {
	t.Helper()
	return chaos.LocalForTest(t, name, 3*time.Minute)
}
